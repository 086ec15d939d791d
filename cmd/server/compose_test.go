package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// serverEnvVars is every variable the server's configuration reads, found
// by reading a configuration of each cloud and noting what it asks for.
func serverEnvVars() []string {
	seen := map[string]bool{}
	for _, cloud := range []string{"fake", "aws"} {
		loadConfig(nil, func(k string) string {
			seen[k] = true
			if k == "BB_CLOUD" {
				return cloud
			}
			return ""
		})
	}
	var vars []string
	for k := range seen {
		vars = append(vars, k)
	}
	slices.Sort(vars)
	return vars
}

// awsEnvVars are what the SDK's default chain needs from a container's
// environment to reach AWS or an emulator.
func awsEnvVars() []string {
	return []string{"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
}

// loadCompose reads docker-compose.yml as docker compose would with the
// given profiles and environment (and nothing of the machine's own).
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithName("bucketbridge"), cli.WithWorkingDirectory(root), cli.WithEnv(envList), cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml with profiles %v: %v", profiles, err)
	}
	return p
}

// TestComposeFile checks docker-compose.yml as `docker compose up` and
// `docker compose --profile moto up` would run it: which services start,
// that each server is given every setting the server reads and passes the
// operator's values through, that the moto server talks to the seeded moto,
// and that no two services, nor a local Postgres or moto, want the same
// host port.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		profile  string
		services []string
		// servers maps each server service to the variables it sets itself
		// rather than taking from the environment.
		servers map[string][]string
	}{
		{"", []string{"postgres", "server"}, map[string][]string{
			"server": {"BB_LISTEN", "DATABASE_URL"},
		}},
		{"moto", []string{"moto", "moto-database", "postgres", "seed-moto", "server", "server-moto"}, map[string][]string{
			"server":      {"BB_LISTEN", "DATABASE_URL"},
			"server-moto": append([]string{"BB_LISTEN", "DATABASE_URL", "BB_CLOUD", "AWS_EC2_METADATA_DISABLED"}, awsEnvVars()...),
		}},
	} {
		t.Run("profile="+tc.profile, func(t *testing.T) {
			t.Parallel()
			var profiles []string
			if tc.profile != "" {
				profiles = []string{tc.profile}
			}
			p := loadCompose(t, nil, profiles...)
			if got := p.ServiceNames(); !slices.Equal(sorted(got), tc.services) {
				t.Errorf("services %v, want %v", sorted(got), tc.services)
			}

			// Every setting the server reads is set, and the operator's value
			// comes through unless the service fixes it.
			sentinel := map[string]string{}
			for _, k := range append(serverEnvVars(), awsEnvVars()...) {
				sentinel[k] = "from-the-operator-" + strings.ToLower(k)
			}
			passed := loadCompose(t, sentinel, profiles...)
			for name, fixed := range tc.servers {
				svc, ok := p.Services[name]
				if !ok {
					t.Fatalf("no service %s", name)
				}
				withEnv := passed.Services[name]
				for _, k := range append(serverEnvVars(), awsEnvVars()...) {
					if v := svc.Environment[k]; v == nil {
						t.Errorf("%s: %s is not set; the server reads it", name, k)
					}
					got := withEnv.Environment[k]
					if through := got != nil && *got == sentinel[k]; through == slices.Contains(fixed, k) {
						t.Errorf("%s: %s = %v with %s=%s in the environment; want it %s", name, k, deref(got), k, sentinel[k],
							map[bool]string{true: "fixed by the service", false: "passed through"}[slices.Contains(fixed, k)])
					}
				}
			}

			// Published ports: loopback only, each host port once, none of a
			// local Postgres (5432) or moto (5000).
			seen := map[string]string{}
			for _, name := range p.ServiceNames() {
				for _, port := range p.Services[name].Ports {
					if port.Published == "" {
						continue
					}
					if port.HostIP != "127.0.0.1" {
						t.Errorf("%s publishes %s on %q, want 127.0.0.1 only", name, port.Published, port.HostIP)
					}
					if other, dup := seen[port.Published]; dup {
						t.Errorf("%s and %s both publish host port %s", other, name, port.Published)
					}
					seen[port.Published] = name
					if port.Published == "5432" || port.Published == "5000" {
						t.Errorf("%s publishes host port %s, which a local Postgres or moto uses", name, port.Published)
					}
				}
			}
		})
	}
}

// TestComposeMotoProfile: the moto server waits for the seeded demo world,
// and it and the seeder both talk to the moto service, with a binary the
// Dockerfile builds; dev mode and moto keep separate databases.
func TestComposeMotoProfile(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, nil, "moto")
	server, seed := p.Services["server-moto"], p.Services["seed-moto"]
	if d := server.DependsOn["seed-moto"]; d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("server-moto depends on seed-moto with %q, want %q", d.Condition, types.ServiceConditionCompletedSuccessfully)
	}
	if got := deref(server.Environment["AWS_ENDPOINT_URL"]); got != "http://moto:5000" {
		t.Errorf("server-moto's AWS_ENDPOINT_URL = %q, want http://moto:5000", got)
	}
	if got := deref(server.Environment["BB_CLOUD"]); got != "aws" {
		t.Errorf("server-moto's BB_CLOUD = %q, want aws", got)
	}
	if !slices.Contains(seed.Entrypoint, "http://moto:5000") {
		t.Errorf("seed-moto runs %v, want it to seed http://moto:5000", seed.Entrypoint)
	}
	if dev, moto := deref(p.Services["server"].Environment["DATABASE_URL"]), deref(server.Environment["DATABASE_URL"]); dev == moto {
		t.Errorf("server and server-moto share the database %s: each would work off the other's requests", dev)
	}
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(seed.Entrypoint) == 0 || !strings.Contains(string(dockerfile), "COPY --from=build /out"+seed.Entrypoint[0]+" "+seed.Entrypoint[0]) {
		t.Errorf("seed-moto runs %v, which the Dockerfile does not put into the image", seed.Entrypoint)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func deref(s *string) string {
	if s == nil {
		return "(unset)"
	}
	return *s
}

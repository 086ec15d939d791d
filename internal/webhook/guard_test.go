package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

func guard(t *testing.T, allow string) *webhook.Guard {
	t.Helper()
	g, err := webhook.NewGuard(allow)
	if err != nil {
		t.Fatalf("NewGuard(%q): %v", allow, err)
	}
	return g
}

func TestCheckURLRefusesWhatCanBeRefusedEarly(t *testing.T) {
	t.Parallel()
	// The allowlist the tests' receivers use: it must not open any of these.
	g := guard(t, "127.0.0.1/32")
	for _, tc := range []struct {
		name, url, want string
	}{
		{"octal IPv4", "https://0177.0.0.1/", "octal, hexadecimal or shortened"},
		{"hexadecimal IPv4", "https://0x7f.0.0.1/", "octal, hexadecimal or shortened"},
		{"IPv4 with leading zeros", "https://127.000.000.001/", "octal, hexadecimal or shortened"},
		{"IPv4 as one decimal number", "https://2852039166/", "octal, hexadecimal or shortened"},
		{"IPv4 as one hexadecimal number", "https://0xa9fea9fe/", "octal, hexadecimal or shortened"},
		{"IPv4 in two parts", "https://127.1/", "octal, hexadecimal or shortened"},
		{"IPv4-compatible IPv6 loopback", "https://[::127.0.0.1]/", "carries 127.0.0.1 (IPv4-compatible), a loopback address"},
		{"NAT64 metadata", "https://[64:ff9b::a9fe:a9fe]/", "carries 169.254.169.254 (NAT64), the cloud instance metadata service"},
		{"6to4 metadata", "https://[2002:a9fe:a9fe::]/", "carries 169.254.169.254 (6to4), the cloud instance metadata service"},
		{"IPv4-mapped metadata", "https://[::ffff:169.254.169.254]/", "the cloud instance metadata service"},
		{"IPv4-translated loopback", "https://[::ffff:0:7f00:2]/", "IPv4-translated"},
		{"Teredo client loopback", "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "carries 127.0.0.1 (Teredo)"},
		{"ISATAP metadata", "https://[2001:db8::5efe:a9fe:a9fe]/", "(ISATAP), the cloud instance metadata service"},
		{"full-width digits and dots", "https://１２７．０．０．１/", "must be ASCII"},
		{"ideographic full stop", "https://127。0。0。1/", "must be ASCII"},
		{"port 0", "https://example.com:0/", "port must be between 1 and 65535, not 0"},
		{"port 99999", "https://example.com:99999/", "port must be between 1 and 65535, not 99999"},
		{"NEL in the path", "https://example.com/a\u0085b", "U+0085"},
		{"NEL in the host", "https://exa\u0085mple.com/", "U+0085"},
		{"NUL", "https://example.com/\x00", "U+0000"},
		{"line feed", "https://example.com/\nHost: evil", "U+000A"},
		{"right-to-left override", "https://example.com/\u202egpj", "U+202E"},
		{"space", "https://example.com/a b", "U+0020"},
		{"invalid UTF-8", "https://example.com/\xff", "valid UTF-8"},
		{"user and password", "https://user:pw@example.com/", "must not contain a user name or password"},
		{"user only", "https://user@example.com/", "must not contain a user name or password"},
		{"too long", "https://example.com/" + strings.Repeat("a", webhook.MaxURLLength), "at most 2048 characters"},
		{"ftp", "ftp://example.com/", "must use https, not ftp"},
		{"file", "file:///etc/passwd", "absolute URL"},
		{"javascript", "javascript:alert(1)", "absolute URL"},
		{"gopher", "gopher://example.com:70/", "must use https, not gopher"},
		{"relative", "/hooks", "absolute URL"},
		{"no host", "https:///hooks", "absolute URL"},
		{"http to an unlisted host", "http://example.com/", "must use https"},
		{"http to an unlisted address", "http://192.0.2.10/", "must use https"},
		{"localhost", "https://localhost/", "names this machine"},
		{"localhost with a trailing dot, upper case", "https://LOCALHOST./", "names this machine"},
		{"a .localhost name", "https://tickets.localhost/", "names this machine"},
		{"metadata.google.internal", "https://metadata.google.internal/computeMetadata/v1/", "cloud-internal service"},
		{"an .internal name", "https://ec2.internal/", "cloud-internal service"},
		{"metadata", "https://169.254.169.254/latest/meta-data/", "the cloud instance metadata service"},
		{"AWS IPv6 metadata", "https://[fd00:ec2::254]/", "the cloud instance metadata service"},
		{"Alibaba metadata", "https://100.100.100.200/", "the cloud instance metadata service"},
		{"loopback not on the allowlist", "https://127.0.0.2/", "a loopback address"},
		{"IPv6 loopback", "https://[::1]/", "a loopback address"},
		{"unspecified", "https://0.0.0.0/", "unspecified"},
		{"IPv6 unspecified", "https://[::]/", "unspecified"},
		{"link-local", "https://169.254.10.10/", "a link-local address"},
		{"IPv6 link-local", "https://[fe80::1]/", "a link-local address"},
		{"IPv6 zone", "https://[fe80::1%25eth0]/", "zone"},
		{"multicast", "https://224.0.0.1/", "a multicast address"},
		{"IPv6 multicast", "https://[ff02::1]/", "a multicast address"},
		{"broadcast", "https://255.255.255.255/", "the broadcast address"},
		{"reserved", "https://240.0.0.1/", "a reserved address"},
		{"private", "https://10.1.2.3/", "a private (RFC 1918) address"},
		{"private 172.16/12", "https://172.31.0.1/", "a private (RFC 1918) address"},
		{"private 192.168/16", "https://192.168.1.1/", "a private (RFC 1918) address"},
		{"carrier-grade NAT", "https://100.64.0.1/", "a carrier-grade NAT (RFC 6598) address"},
		{"unique local", "https://[fc00::1]/", "a unique local (private) IPv6 address"},
		{"NAT64 of a private address", "https://[64:ff9b::a00:1]/", "carries 10.0.0.1 (NAT64), a private"},
		{"not a DNS name", "https://exa_mple-.com/", "not a valid DNS name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := g.CheckURL(tc.url)
			var ue *webhook.URLError
			if !errors.As(err, &ue) {
				t.Fatalf("CheckURL(%q) = %v, want a *URLError", tc.url, err)
			}
			if !strings.Contains(ue.Reason, tc.want) {
				t.Fatalf("CheckURL(%q) reason %q, want it to say %q", tc.url, ue.Reason, tc.want)
			}
		})
	}
}

func TestCheckURLAccepts(t *testing.T) {
	t.Parallel()
	g := guard(t, "127.0.0.1/32, 10.20.0.0/16, jira.corp.example, *.svc.corp.example, tickets.internal")
	for _, u := range []string{
		"https://tickets.example.com/hooks/bucketbridge?token=abc#frag",
		"https://Tickets.Example.COM./hooks",
		"https://tickets.example.com:8443/",
		"https://192.0.2.10/hook",
		"https://[2001:db8::1]:8443/hook",
		"https://xn--caf-dma.example/",
		"https://example.com/caf%C3%A9",
		"http://127.0.0.1:8080/hook",
		"http://[::ffff:127.0.0.1]:8080/hook",
		"http://10.20.3.4/hook",
		"https://10.20.3.4/hook",
		"http://jira.corp.example/rest/hooks",
		"http://sn.svc.corp.example/hooks",
		"https://tickets.internal/hooks",
		"https://example.com/" + strings.Repeat("a", webhook.MaxURLLength-len("https://example.com/")),
	} {
		if err := g.CheckURL(u); err != nil {
			t.Errorf("CheckURL(%q) = %v, want nil", u, err)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		allow, host, addr string
		ok                bool
	}{
		{"127.0.0.1/32", "", "127.0.0.1", true},
		{"127.0.0.1/32", "", "::ffff:127.0.0.1", true},
		{"127.0.0.1/32", "", "127.0.0.2", false},
		{"127.0.0.1/32", "", "::1", false},
		{"127.0.0.1/32", "", "::127.0.0.1", false},
		{"127.0.0.1/32", "", "64:ff9b::7f00:1", false},
		{"::1", "", "::1", true},
		{"", "", "93.184.216.34", true},
		{"", "", "2606:4700::1111", true},
		{"", "", "192.0.2.10", true},
		// A catch-all CIDR admits private addresses but nothing that is
		// always refused.
		{"0.0.0.0/0,::/0", "", "10.0.0.1", true},
		{"0.0.0.0/0,::/0", "", "fd12::1", true},
		{"0.0.0.0/0,::/0", "", "127.0.0.1", false},
		{"0.0.0.0/0,::/0", "", "169.254.169.254", false},
		{"0.0.0.0/0,::/0", "", "fd00:ec2::254", false},
		{"0.0.0.0/0,::/0", "", "100.100.100.200", false},
		{"0.0.0.0/0,::/0", "", "64:ff9b::a9fe:a9fe", false},
		// Link-local may be opened, but metadata only by naming it.
		{"169.254.0.0/16", "", "169.254.1.1", true},
		{"169.254.0.0/16", "", "169.254.169.254", false},
		{"169.254.169.254/32", "", "169.254.169.254", true},
		{"100.64.0.0/10", "", "100.64.1.1", true},
		{"100.64.0.0/10", "", "100.100.100.200", false},
		{"fc00::/7", "", "fd00:ec2::254", false},
		{"fd00:ec2::254/128", "", "fd00:ec2::254", true},
		// A listed host name admits the private addresses it resolves to,
		// never the always-refused ones.
		{"jira.corp.example", "jira.corp.example", "10.1.2.3", true},
		{"jira.corp.example", "JIRA.corp.example.", "10.1.2.3", true},
		{"jira.corp.example", "jira.corp.example", "100.64.1.1", true},
		{"jira.corp.example", "jira.corp.example", "fd12::1", true},
		{"jira.corp.example", "jira.corp.example", "64:ff9b::a00:1", true},
		{"jira.corp.example", "jira.corp.example", "::ffff:10.1.2.3", true},
		{"jira.corp.example", "other.corp.example", "10.1.2.3", false},
		{"jira.corp.example", "", "10.1.2.3", false},
		{"jira.corp.example", "jira.corp.example", "127.0.0.1", false},
		{"jira.corp.example", "jira.corp.example", "169.254.169.254", false},
		{"jira.corp.example", "jira.corp.example", "fd00:ec2::254", false},
		{"jira.corp.example", "jira.corp.example", "100.100.100.200", false},
		{"jira.corp.example", "jira.corp.example", "64:ff9b::a9fe:a9fe", false},
		{"jira.corp.example", "jira.corp.example", "2002:a9fe:a9fe::", false},
		{"jira.corp.example", "jira.corp.example", "fe80::1", false},
		{"*.corp.example", "jira.corp.example", "10.1.2.3", true},
		{"*.corp.example", "corp.example", "10.1.2.3", false},
		{"*.corp.example", "evilcorp.example", "10.1.2.3", false},
		// A CIDR that covers an embedded private address admits it.
		{"10.0.0.0/8", "", "64:ff9b::a00:1", true},
		{"", "", "2002:a00:1::", false},
	} {
		g := guard(t, tc.allow)
		err := g.CheckAddr(tc.host, netip.MustParseAddr(tc.addr))
		if (err == nil) != tc.ok {
			t.Errorf("allow %q: CheckAddr(%q, %s) = %v, want ok=%v", tc.allow, tc.host, tc.addr, err, tc.ok)
		}
		var ae *webhook.AddressError
		if err != nil && !errors.As(err, &ae) {
			t.Errorf("CheckAddr error %v is not an *AddressError", err)
		}
	}
}

func TestNewGuardRefusesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	for _, allow := range []string{"10.0.0.1/8", "300.0.0.0/8", "10.0.0.0/33", "not a host", "fe80::1%eth0", "-bad.example"} {
		if _, err := webhook.NewGuard(allow); err == nil {
			t.Errorf("NewGuard(%q) accepted it", allow)
		}
	}
	g := guard(t, " 10.0.0.1 , ::ffff:10.9.0.0/112,, Jira.Corp.Example. ")
	if got, want := g.String(), "10.0.0.1/32,10.9.0.0/16,jira.corp.example"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// What a hostile or rebinding DNS server might answer for a name that
// passed the create-time check: addresses refused even for a listed name,
// and private ones, refused unless the name is listed.
var (
	alwaysRefusedAddresses = []string{
		"127.0.0.2", "::1", "::ffff:127.0.0.2", "::127.0.0.2", "0.0.0.0", "::",
		"169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::",
		"2001:db8::5efe:a9fe:a9fe", "fd00:ec2::254", "100.100.100.200", "169.254.1.1", "fe80::1",
		"224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1",
	}
	privateAddresses = []string{"10.0.0.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "fc00::1", "64:ff9b::a00:1"}
	forgedAddresses  = append(append([]string{}, alwaysRefusedAddresses...), privateAddresses...)
)

func TestDialRefusesForgedAddressesAfterResolving(t *testing.T) {
	t.Parallel()
	// hooks.example.com passes CheckURL; its resolver then answers a
	// forbidden address (DNS rebinding).
	g := guard(t, "127.0.0.1/32")
	if err := g.CheckURL("https://hooks.example.com/"); err != nil {
		t.Fatal(err)
	}
	for _, addr := range forgedAddresses {
		lookup := func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr(addr)}, nil
		}
		conn, err := g.DialContextFunc(lookup)(context.Background(), "tcp", "hooks.example.com:443")
		if conn != nil {
			conn.Close()
		}
		var ae *webhook.AddressError
		if !errors.As(err, &ae) {
			t.Errorf("dial hooks.example.com resolved to %s = %v, want an *AddressError", addr, err)
		} else if ae.Host != "hooks.example.com" {
			t.Errorf("AddressError names host %q", ae.Host)
		}
	}
}

func TestDialRefusesBeforeAnyPacketIsSent(t *testing.T) {
	t.Parallel()
	// A listener on a loopback address the allowlist does not name: the
	// guard must refuse before connecting, so it never sees a connection.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	defer ln.Close()
	// accepted gets the peer address of every connection, in order.
	accepted := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	g := guard(t, "127.0.0.1/32, hooks.example.com")
	port := ln.Addr().(*net.TCPAddr).Port
	lookup := func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
	}
	dial := g.DialContextFunc(lookup)
	for _, target := range []string{"hooks.example.com", "127.0.0.2", "::ffff:127.0.0.2"} {
		_, err := dial(context.Background(), "tcp", net.JoinHostPort(target, strconv.Itoa(port)))
		var ae *webhook.AddressError
		if !errors.As(err, &ae) {
			t.Fatalf("dial %s = %v, want an *AddressError", target, err)
		}
	}
	// The same listener is reachable once the allowlist names it, which
	// proves the refusal above was the guard's.
	open := guard(t, "127.0.0.2/32").DialContextFunc(lookup)
	conn, err := open(context.Background(), "tcp", net.JoinHostPort("hooks.example.com", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("dial with 127.0.0.2/32 allowed: %v", err)
	}
	defer conn.Close()
	select {
	case peer := <-accepted:
		// Connections are accepted in the order they arrived: the first
		// must be the allowed one.
		if peer != conn.LocalAddr().String() {
			t.Fatalf("first connection came from %s, not from the allowed dial %s: a refused dial reached the listener", peer, conn.LocalAddr())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the allowed connection never arrived")
	}
}

package provision

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// AssumeRoler is the STS call that opens a provisioner session; *sts.Client
// (with the service's own credentials) satisfies it, and so does the fake's STS.
type AssumeRoler interface {
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
}

// ClientsForFunc turns provisioner-session credentials into an Account whose
// S3 and KMS act in region.
type ClientsForFunc func(creds ststypes.Credentials, region string) (*Account, error)

const (
	// sessionName names bucketbridge's sessions in CloudTrail.
	sessionName = "bucketbridge"
	// sessionDuration is the provisioner session's lifetime: one hour is the
	// default maximum session duration of a role (IAM User Guide, "Using IAM
	// roles", MaxSessionDuration), and longer than any step.
	sessionDuration = time.Hour
	// sessionExpiryWindow renews credentials this long before they expire, so
	// that no step starts with credentials about to lapse.
	sessionExpiryWindow = 5 * time.Minute
)

// assumer caches one credentials provider per account: AssumeRole into the
// provisioner role with the ExternalId, renewed when near expiry.
type assumer struct {
	base       AssumeRoler
	role       string
	externalID string

	mu    sync.Mutex
	creds map[string]*aws.CredentialsCache
}

func newAssumer(base AssumeRoler, role, externalID string) *assumer {
	return &assumer{base: base, role: role, externalID: externalID, creds: map[string]*aws.CredentialsCache{}}
}

// roleARN is the provisioner role in accountID. Partition "aws": the regions
// bucketbridge accepts are all in it (validate.go).
func (a *assumer) roleARN(accountID string) string {
	return policy.RoleARN("aws", accountID, a.role)
}

// provider returns accountID's cached credentials provider.
func (a *assumer) provider(accountID string) *aws.CredentialsCache {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.creds[accountID]
	if !ok {
		p := stscreds.NewAssumeRoleProvider(a.base, a.roleARN(accountID), func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = sessionName
			o.Duration = sessionDuration
			if a.externalID != "" {
				o.ExternalID = aws.String(a.externalID)
			}
		})
		c = aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = sessionExpiryWindow })
		a.creds[accountID] = c
	}
	return c
}

// retrieve returns current credentials for accountID, assuming the role when
// the cached ones are missing or near expiry.
func (a *assumer) retrieve(ctx context.Context, accountID string) (aws.Credentials, error) {
	creds, err := a.provider(accountID).Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, a.assumeError(accountID, err)
	}
	return creds, nil
}

// assumeError explains a failed AssumeRole: a denial means the role is
// missing, its trust policy does not allow the service, or the ExternalId
// differs; those never fix themselves.
func (a *assumer) assumeError(accountID string, err error) error {
	arn := a.roleARN(accountID)
	switch code := errorCode(err); {
	case code == "AccessDenied" || code == "AccessDeniedException" || httpStatus(err) == 403:
		return Permanent(fmt.Sprintf("cannot assume %s in account %s (%s): check that the role exists, that its trust policy allows the service's identity with sts:ExternalId equal to the configured ExternalId (BB_EXTERNAL_ID), and that the service's identity may sts:AssumeRole it", arn, accountID, code), err)
	case code == "ValidationError" || code == "RegionDisabledException" || credentialCodes[code]:
		return Permanent(fmt.Sprintf("cannot assume %s in account %s (%s): check BB_PROVISIONER_ROLE and the service's own credentials", arn, accountID, code), err)
	}
	return classify(err, call{Account: accountID, Action: "sts:AssumeRole", Resource: arn})
}

type accountRegion struct{ account, region string }

// NewAWSSessions returns Sessions backed by aws-sdk-go-v2. cfg carries the
// service's own credentials (config.LoadDefaultConfig: the SDK's default chain,
// and AWS_ENDPOINT_URL for an emulator such as moto); in each account it
// assumes arn:aws:iam::<account>:role/<provisionerRole> with externalID, caches
// the credentials until near expiry, and builds IAM, KMS, S3 and STS clients
// from a copy of cfg with those credentials and the bucket's region. With an
// endpoint override (cfg.BaseEndpoint) S3 uses path-style addressing, which
// emulators need.
func NewAWSSessions(cfg aws.Config, provisionerRole, externalID string) Sessions {
	stsCfg := cfg.Copy()
	stsCfg.Region = cmp.Or(stsCfg.Region, "us-east-1")
	return NewAssumingSessions(sts.NewFromConfig(stsCfg), sdkClients(cfg), provisionerRole, externalID)
}

// sdkClients builds an account's SDK clients from cfg and a session's
// credentials.
func sdkClients(base aws.Config) ClientsForFunc {
	return func(creds ststypes.Credentials, region string) (*Account, error) {
		cfg := base.Copy()
		cfg.Region = region
		cfg.Credentials = credentials.NewStaticCredentialsProvider(
			aws.ToString(creds.AccessKeyId), aws.ToString(creds.SecretAccessKey), aws.ToString(creds.SessionToken))
		pathStyle := cfg.BaseEndpoint != nil
		return &Account{
			STS: sts.NewFromConfig(cfg),
			IAM: iam.NewFromConfig(cfg),
			KMS: kms.NewFromConfig(cfg),
			S3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = o.UsePathStyle || pathStyle }),
		}, nil
	}
}

// assumingSessions opens sessions through any AssumeRoler and turns the
// credentials into clients with a ClientsForFunc: the SDK's clients against
// AWS, or the in-memory fake's in dev mode and tests, so that a wrong
// ExternalId fails there too.
type assumingSessions struct {
	assumer    *assumer
	clientsFor ClientsForFunc

	mu       sync.Mutex
	accounts map[accountRegion]cachedAccount
}

type cachedAccount struct {
	keyID   string
	account *Account
}

// NewAssumingSessions returns Sessions that assume the provisioner role
// through base (the service's own STS) with externalID, cache the credentials
// per account until near expiry, and build each account's clients (per
// region) with clientsFor, again whenever the credentials are renewed.
func NewAssumingSessions(base AssumeRoler, clientsFor ClientsForFunc, provisionerRole, externalID string) Sessions {
	return &assumingSessions{
		assumer:    newAssumer(base, provisionerRole, externalID),
		clientsFor: clientsFor,
		accounts:   map[accountRegion]cachedAccount{},
	}
}

// Account implements Sessions.
func (s *assumingSessions) Account(ctx context.Context, accountID, region string) (*Account, error) {
	creds, err := s.assumer.retrieve(ctx, accountID)
	if err != nil {
		return nil, err
	}
	k := accountRegion{accountID, region}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.accounts[k]; ok && c.keyID == creds.AccessKeyID {
		return c.account, nil
	}
	st := ststypes.Credentials{
		AccessKeyId:     aws.String(creds.AccessKeyID),
		SecretAccessKey: aws.String(creds.SecretAccessKey),
		SessionToken:    aws.String(creds.SessionToken),
	}
	if creds.CanExpire {
		st.Expiration = aws.Time(creds.Expires)
	}
	a, err := s.clientsFor(st, region)
	if err != nil {
		return nil, classify(err, call{Account: accountID, Action: "sts:AssumeRole", Resource: s.assumer.roleARN(accountID)})
	}
	out := *a
	out.ID = accountID
	out.STS = &knownIdentity{CallerIdentity: a.STS}
	s.accounts[k] = cachedAccount{keyID: creds.AccessKeyID, account: &out}
	return &out, nil
}

// knownIdentity answers GetCallerIdentity with the first answer STS gave:
// a session's identity does not change while its credentials last, and
// the Account holding it is built again when they are renewed. Every
// request's first step asks, so this spares each request a round trip.
type knownIdentity struct {
	CallerIdentity

	mu  sync.Mutex
	out *sts.GetCallerIdentityOutput
}

// GetCallerIdentity implements CallerIdentity.
func (k *knownIdentity) GetCallerIdentity(ctx context.Context, in *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error) {
	k.mu.Lock()
	out := k.out
	k.mu.Unlock()
	if out != nil {
		return out, nil
	}
	out, err := k.CallerIdentity.GetCallerIdentity(ctx, in, optFns...)
	if err == nil {
		k.mu.Lock()
		k.out = out
		k.mu.Unlock()
	}
	return out, err
}

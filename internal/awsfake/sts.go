package awsfake

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// ServiceUserName is the IAM user name the fake gives the service's own
// identity in every account: GetCallerIdentity of c.STS(account) answers
// arn:aws:iam::<account>:user/bucketbridge.
const ServiceUserName = "bucketbridge"

var roleARNRE = regexp.MustCompile(`^arn:aws:iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]{1,64})$`)

// serviceIdentity is the principal of the service's own credentials.
func serviceIdentity(account string) principal {
	return principal{account: account, arn: "arn:aws:iam::" + account + ":user/" + ServiceUserName, userID: "AIDA" + account + "BUCKETBRIDGE"}
}

// STS is an STS client with the methods of *sts.Client that bucketbridge
// uses, acting as one caller.
type STS struct {
	c      *Cloud
	caller principal
}

// STS returns an STS client whose caller is the service's own identity in
// account (see ServiceUserName).
func (c *Cloud) STS(account string) *STS { return &STS{c: c, caller: serviceIdentity(account)} }

// GetCallerIdentity says who the client acts as.
func (s *STS) GetCallerIdentity(ctx context.Context, _ *sts.GetCallerIdentityInput, _ ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error) {
	return do(ctx, s.c, s.caller, svcSTS, "GetCallerIdentity", func() (*sts.GetCallerIdentityOutput, error) {
		return &sts.GetCallerIdentityOutput{Account: aws.String(s.caller.account), Arn: aws.String(s.caller.arn), UserId: aws.String(s.caller.userID)}, nil
	})
}

// AssumeRole returns temporary credentials for a role session, when the
// role exists and its trust policy allows the caller (directly, or through
// its account) with the request's sts:ExternalId; AccessDenied otherwise,
// with AWS's message. Turn the credentials into clients with ClientsFor.
func (s *STS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	return do(ctx, s.c, s.caller, svcSTS, "AssumeRole", func() (*sts.AssumeRoleOutput, error) {
		arn := aws.ToString(in.RoleArn)
		name := aws.ToString(in.RoleSessionName)
		if name == "" || len(name) > 64 {
			return nil, newErr(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must have length less than or equal to 64", name)
		}
		denied := newErr(http.StatusForbidden, "AccessDenied", "User: %s is not authorized to perform: sts:AssumeRole on resource: %s", s.caller.arn, arn)
		m := roleARNRE.FindStringSubmatch(arn)
		if m == nil {
			return nil, newErr(http.StatusBadRequest, "ValidationError", "%s is invalid", arn)
		}
		r := s.c.roleByARNLocked(arn)
		if r == nil {
			return nil, denied
		}
		trust, err := policy.Parse([]byte(r.trust))
		if err != nil {
			return nil, denied
		}
		ctxKeys := map[string]string{"aws:principalaccount": s.caller.account, "aws:principalarn": s.caller.arn}
		if in.ExternalId != nil {
			ctxKeys["sts:externalid"] = *in.ExternalId
		}
		req := request{caller: s.caller, action: "sts:AssumeRole", resource: r.arn, context: ctxKeys}
		if !authorize(req, adminIdentity, &trust, m[1], keyPolicy, "the trust policy").ok {
			return nil, denied
		}
		dur := time.Duration(aws.ToInt32(in.DurationSeconds)) * time.Second
		if dur == 0 {
			dur = time.Hour
		}
		if dur > time.Duration(r.maxSession)*time.Second {
			return nil, newErr(http.StatusBadRequest, "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
		}
		expires := s.c.now().Add(dur).UTC()
		keyID := "ASIA" + s.c.randomIDLocked(16)
		caller := principal{
			account: m[1],
			arn:     fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", m[1], r.name, name),
			roleARN: r.arn,
			userID:  r.id + ":" + name,
		}
		s.c.sessions[keyID] = session{caller: caller, expires: expires}
		return &sts.AssumeRoleOutput{
			AssumedRoleUser: &ststypes.AssumedRoleUser{Arn: aws.String(caller.arn), AssumedRoleId: aws.String(caller.userID)},
			Credentials: &ststypes.Credentials{
				AccessKeyId:     aws.String(keyID),
				SecretAccessKey: aws.String(strings.ToLower(s.c.randomIDLocked(40))),
				SessionToken:    aws.String("FwoGZXIvYXdzE" + s.c.randomIDLocked(60)),
				Expiration:      aws.Time(expires),
			},
		}, nil
	})
}

// Clients are SDK-shaped clients acting as one caller; KMS and S3 are bound
// to a region.
type Clients struct {
	// Account is the account the caller acts in.
	Account string
	STS     *STS
	IAM     *IAM
	KMS     *KMS
	S3      *S3
}

// ClientsFor returns clients acting as the role session that creds (from
// this Cloud's AssumeRole) stand for, with KMS and S3 in region. Unknown
// credentials answer InvalidClientTokenId and expired ones ExpiredToken,
// as AWS does.
func (c *Cloud) ClientsFor(creds ststypes.Credentials, region string) (*Clients, error) {
	c.mu.Lock()
	s, ok := c.sessions[aws.ToString(creds.AccessKeyId)]
	now := c.now()
	c.mu.Unlock()
	switch {
	case !ok:
		return nil, wrapErr(svcSTS, "GetCallerIdentity", newErr(http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid."))
	case !now.Before(s.expires):
		return nil, wrapErr(svcSTS, "GetCallerIdentity", newErr(http.StatusForbidden, "ExpiredToken", "The security token included in the request is expired"))
	}
	return &Clients{
		Account: s.caller.account,
		STS:     &STS{c: c, caller: s.caller},
		IAM:     &IAM{c: c, caller: s.caller},
		KMS:     &KMS{c: c, caller: s.caller, region: region},
		S3:      &S3{c: c, caller: s.caller, region: region},
	}, nil
}

// AccountFor returns the account that AssumeRole credentials act in.
func (c *Cloud) AccountFor(creds ststypes.Credentials) (string, error) {
	cl, err := c.ClientsFor(creds, "us-east-1")
	if err != nil {
		return "", err
	}
	return cl.Account, nil
}

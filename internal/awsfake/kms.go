package awsfake

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/google/uuid"
)

// key is a KMS key.
type key struct {
	id, arn, account, region, description string
	policy                                string
	enabled                               bool
	manager                               kmstypes.KeyManagerType
	spec                                  kmstypes.KeySpec
	created                               time.Time
	aliases                               []string
}

func (k *key) metadata() *kmstypes.KeyMetadata {
	state := kmstypes.KeyStateEnabled
	if !k.enabled {
		state = kmstypes.KeyStateDisabled
	}
	usage := kmstypes.KeyUsageTypeEncryptDecrypt
	return &kmstypes.KeyMetadata{
		KeyId:                 aws.String(k.id),
		Arn:                   aws.String(k.arn),
		AWSAccountId:          aws.String(k.account),
		CreationDate:          aws.Time(k.created),
		Description:           aws.String(k.description),
		Enabled:               k.enabled,
		KeyState:              state,
		KeyManager:            k.manager,
		KeySpec:               k.spec,
		CustomerMasterKeySpec: kmstypes.CustomerMasterKeySpec(k.spec),
		KeyUsage:              usage,
		Origin:                kmstypes.OriginTypeAwsKms,
		MultiRegion:           aws.Bool(false),
		EncryptionAlgorithms:  []kmstypes.EncryptionAlgorithmSpec{kmstypes.EncryptionAlgorithmSpecSymmetricDefault},
	}
}

// DefaultKeyPolicy is the key policy KMS gives a key created without one:
// it delegates all access to the account's IAM policies (AWS KMS Developer
// Guide, "Default key policy").
func DefaultKeyPolicy(account string) string {
	return `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account + `:root"},"Action":"kms:*","Resource":"*"}]}`
}

// KMS is a KMS client acting as one caller in one region, with the methods
// of *kms.Client that bucketbridge uses. Keys are regional: a key of
// another region or account is NotFoundException.
type KMS struct {
	c      *Cloud
	caller principal
	region string
}

// KMS returns a KMS client acting as the service's identity in account and
// region.
func (c *Cloud) KMS(account, region string) *KMS {
	return &KMS{c: c, caller: serviceIdentity(account), region: region}
}

func kmsNotFound(format string, args ...any) error {
	return typed(http.StatusBadRequest, &kmstypes.NotFoundException{Message: aws.String(fmt.Sprintf(format, args...))})
}

func kmsMalformed(msg string) error {
	return typed(http.StatusBadRequest, &kmstypes.MalformedPolicyDocumentException{Message: aws.String(msg)})
}

// keyLocked resolves a key ID, key ARN, alias name or alias ARN in the
// client's account and region.
func (k *KMS) keyLocked(id string) (*key, error) {
	prefix := "arn:aws:kms:" + k.region + ":" + k.caller.account + ":"
	switch {
	case id == "":
		return nil, typed(http.StatusBadRequest, &kmstypes.InvalidArnException{Message: aws.String("KeyId is required")})
	case strings.HasPrefix(id, "alias/") || strings.Contains(id, ":alias/"):
		name := id[strings.Index(id, "alias/"):]
		if strings.HasPrefix(id, "arn:") && !strings.HasPrefix(id, prefix) {
			return nil, kmsNotFound("Alias '%s' is not found.", id)
		}
		for _, ky := range k.c.keys {
			if ky.account == k.caller.account && ky.region == k.region && containsString(ky.aliases, name) {
				return ky, nil
			}
		}
		return nil, kmsNotFound("Alias '%s%s' is not found.", prefix, name)
	case strings.HasPrefix(id, "arn:"):
		if ky, ok := k.c.keys[id]; ok && strings.HasPrefix(id, prefix) {
			return ky, nil
		}
		return nil, kmsNotFound("Key '%s' does not exist", id)
	default:
		if ky, ok := k.c.keys[prefix+"key/"+id]; ok {
			return ky, nil
		}
		return nil, kmsNotFound("Key '%skey/%s' does not exist", prefix, id)
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// authorizeLocked checks the key policy allows the caller action on k
// (the caller's identity is taken to allow everything in its account).
func (k *KMS) authorizeLocked(ky *key, action string) error {
	doc, err := parsePolicy(ky.policy, false)
	if err == nil && authorize(request{caller: k.caller, action: action, resource: ky.arn}, adminIdentity, &doc, ky.account, keyPolicy, "the key policy").ok {
		return nil
	}
	return newErr(http.StatusBadRequest, "AccessDeniedException", "User: %s is not authorized to perform: %s on resource: %s because no resource-based policy allows the %s action", k.caller.arn, action, ky.arn, action)
}

// maxKeyPolicySize is KMS's key policy size quota, 32 KB (32,768 bytes).
// See https://docs.aws.amazon.com/kms/latest/developerguide/resource-limits.html
const maxKeyPolicySize = 32 * 1024

// checkKeyPolicyLocked validates a key policy as KMS does: size, syntax,
// principals S3 and KMS can see, and (unless bypassed) that the caller
// can still change the policy afterwards.
func (k *KMS) checkKeyPolicyLocked(doc, keyARN string, bypass bool) error {
	if len(doc) > maxKeyPolicySize {
		// "If the key policy exceeds the length constraint, KMS returns a
		// LimitExceededException" (KMS API Reference, PutKeyPolicy, Policy);
		// the message is the fake's own.
		return typed(http.StatusBadRequest, &kmstypes.LimitExceededException{Message: aws.String(fmt.Sprintf("Key policy of %d bytes exceeds the quota of %d bytes.", len(doc), maxKeyPolicySize))})
	}
	d, err := parsePolicy(doc, false)
	if err != nil {
		return kmsMalformed(err.Error())
	}
	if bad := k.c.invalidPrincipalLocked(d, true); bad != "" {
		// KMS's answer to a principal it cannot resolve, above all the
		// unique ID (AROA…) a deleted role leaves behind: AWS Knowledge
		// Center, "How do I resolve the AWS KMS key policy error 'Policy
		// contains a statement with one or more invalid principals'?",
		// https://repost.aws/knowledge-center/kms-policy-error-invalid-principals
		return kmsMalformed("Policy contains a statement with one or more invalid principals.")
	}
	if bypass {
		return nil
	}
	req := request{caller: k.caller, action: "kms:PutKeyPolicy", resource: keyARN}
	if !authorize(req, adminIdentity, &d, k.caller.account, keyPolicy, "the new key policy").ok {
		return kmsMalformed("The new key policy will not allow you to update the key policy in the future.")
	}
	return nil
}

// CreateKey creates a symmetric customer-managed key; without a Policy it
// gets DefaultKeyPolicy.
func (k *KMS) CreateKey(ctx context.Context, in *kms.CreateKeyInput, _ ...func(*kms.Options)) (*kms.CreateKeyOutput, error) {
	return do(ctx, k.c, k.caller, svcKMS, "CreateKey", func() (*kms.CreateKeyOutput, error) {
		id := uuid.NewString()
		arn := "arn:aws:kms:" + k.region + ":" + k.caller.account + ":key/" + id
		doc := aws.ToString(in.Policy)
		if doc == "" {
			doc = DefaultKeyPolicy(k.caller.account)
		} else if err := k.checkKeyPolicyLocked(doc, arn, in.BypassPolicyLockoutSafetyCheck); err != nil {
			return nil, err
		}
		ky := k.c.addKeyLocked(k.caller.account, k.region, KeyOptions{ID: id, Policy: doc, Description: aws.ToString(in.Description), KeySpec: in.KeySpec})
		return &kms.CreateKeyOutput{KeyMetadata: ky.metadata()}, nil
	})
}

// DescribeKey describes a key of the client's account and region.
func (k *KMS) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	return do(ctx, k.c, k.caller, svcKMS, "DescribeKey", func() (*kms.DescribeKeyOutput, error) {
		ky, err := k.keyLocked(aws.ToString(in.KeyId))
		if err != nil {
			return nil, err
		}
		if err := k.authorizeLocked(ky, "kms:DescribeKey"); err != nil {
			return nil, err
		}
		return &kms.DescribeKeyOutput{KeyMetadata: ky.metadata()}, nil
	})
}

func checkPolicyName(n *string) error {
	if n != nil && *n != "default" {
		return kmsNotFound("Policy '%s' does not exist", *n)
	}
	return nil
}

// GetKeyPolicy returns a key's policy exactly as it was stored. PolicyName
// may be omitted or "default", as on AWS.
func (k *KMS) GetKeyPolicy(ctx context.Context, in *kms.GetKeyPolicyInput, _ ...func(*kms.Options)) (*kms.GetKeyPolicyOutput, error) {
	return do(ctx, k.c, k.caller, svcKMS, "GetKeyPolicy", func() (*kms.GetKeyPolicyOutput, error) {
		ky, err := k.keyLocked(aws.ToString(in.KeyId))
		if err != nil {
			return nil, err
		}
		if err := checkPolicyName(in.PolicyName); err != nil {
			return nil, err
		}
		if err := k.authorizeLocked(ky, "kms:GetKeyPolicy"); err != nil {
			return nil, err
		}
		return &kms.GetKeyPolicyOutput{Policy: aws.String(ky.policy), PolicyName: aws.String("default")}, nil
	})
}

// PutKeyPolicy replaces a key's policy. It rejects malformed documents,
// principals KMS cannot see (such as a role created moments ago) and,
// unless BypassPolicyLockoutSafetyCheck, a policy that would stop the
// caller from changing it again (AWS KMS Developer Guide, "Key policies").
func (k *KMS) PutKeyPolicy(ctx context.Context, in *kms.PutKeyPolicyInput, _ ...func(*kms.Options)) (*kms.PutKeyPolicyOutput, error) {
	return do(ctx, k.c, k.caller, svcKMS, "PutKeyPolicy", func() (*kms.PutKeyPolicyOutput, error) {
		ky, err := k.keyLocked(aws.ToString(in.KeyId))
		if err != nil {
			return nil, err
		}
		if err := checkPolicyName(in.PolicyName); err != nil {
			return nil, err
		}
		if err := k.authorizeLocked(ky, "kms:PutKeyPolicy"); err != nil {
			return nil, err
		}
		if err := k.checkKeyPolicyLocked(aws.ToString(in.Policy), ky.arn, in.BypassPolicyLockoutSafetyCheck); err != nil {
			return nil, err
		}
		ky.policy = aws.ToString(in.Policy)
		return &kms.PutKeyPolicyOutput{}, nil
	})
}

// KeyOptions describe a key added with Cloud.AddKey.
type KeyOptions struct {
	// ID is the key ID (a UUID); empty means a random one.
	ID string
	// Policy is the key policy; empty means DefaultKeyPolicy.
	Policy string
	// Description is the key's description.
	Description string
	// AWSManaged makes it an AWS managed key (KeyManager AWS), such as
	// aws/s3; give it Alias "alias/aws/s3".
	AWSManaged bool
	// Alias is an optional alias name ("alias/...").
	Alias string
	// Disabled creates the key disabled.
	Disabled bool
	// KeySpec defaults to SYMMETRIC_DEFAULT.
	KeySpec kmstypes.KeySpec
}

// AddKey seeds a key without validation or faults and returns its ARN.
func (c *Cloud) AddKey(account, region string, o KeyOptions) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	return c.addKeyLocked(account, region, o).arn
}

func (c *Cloud) addKeyLocked(account, region string, o KeyOptions) *key {
	o.ID = cmp.Or(o.ID, uuid.NewString())
	o.Policy = cmp.Or(o.Policy, DefaultKeyPolicy(account))
	o.KeySpec = kmstypes.KeySpec(cmp.Or(string(o.KeySpec), string(kmstypes.KeySpecSymmetricDefault)))
	ky := &key{
		id: o.ID, arn: "arn:aws:kms:" + region + ":" + account + ":key/" + o.ID, account: account, region: region,
		description: o.Description, policy: o.Policy, enabled: !o.Disabled, manager: kmstypes.KeyManagerTypeCustomer,
		spec: o.KeySpec, created: c.now(),
	}
	if o.AWSManaged {
		ky.manager = kmstypes.KeyManagerTypeAws
	}
	if o.Alias != "" {
		ky.aliases = []string{o.Alias}
	}
	c.accountLocked(account)
	c.keys[ky.arn] = ky
	return ky
}

// SetKeyEnabled enables or disables a key, by ARN.
func (c *Cloud) SetKeyEnabled(keyARN string, enabled bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ky, ok := c.keys[keyARN]
	if !ok {
		return fmt.Errorf("awsfake: no key %s", keyARN)
	}
	c.gen++
	ky.enabled = enabled
	return nil
}

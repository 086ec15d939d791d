package policy

import "strings"

// Server-side encryption algorithms as S3 names them (SSEAlgorithm).
const (
	// SSES3 is server-side encryption with S3 managed keys, every bucket's default since
	// January 2023.
	SSES3 = "AES256"
	// SSEKMS is server-side encryption with a KMS key.
	SSEKMS = "aws:kms"
	// SSEKMSDSSE is dual-layer server-side encryption with a KMS key.
	SSEKMSDSSE = "aws:kms:dsse"
)

// BucketEncryption mirrors S3's default encryption configuration. Its JSON field names are
// those of aws-sdk-go-v2's s3types.ServerSideEncryptionConfiguration, so the provisioner
// converts between the two with encoding/json.
// See https://docs.aws.amazon.com/AmazonS3/latest/API/API_ServerSideEncryptionConfiguration.html
type BucketEncryption struct {
	// Rules holds one rule in practice.
	Rules []EncryptionRule `json:"Rules"`
}

// EncryptionRule mirrors s3types.ServerSideEncryptionRule.
type EncryptionRule struct {
	// ApplyServerSideEncryptionByDefault is what an object written without encryption headers
	// gets.
	ApplyServerSideEncryptionByDefault *EncryptionByDefault `json:"ApplyServerSideEncryptionByDefault,omitempty"`
	// BucketKeyEnabled turns S3 Bucket Keys on for SSE-KMS objects written without their own
	// setting.
	BucketKeyEnabled *bool `json:"BucketKeyEnabled,omitempty"`
}

// EncryptionByDefault mirrors s3types.ServerSideEncryptionByDefault.
type EncryptionByDefault struct {
	// SSEAlgorithm is [SSES3], [SSEKMS] or [SSEKMSDSSE].
	SSEAlgorithm string `json:"SSEAlgorithm"`
	// KMSMasterKeyID is the key of SSE-KMS: a key ARN, key ID, alias name or alias ARN; nil
	// means the AWS managed key aws/s3.
	KMSMasterKeyID *string `json:"KMSMasterKeyID,omitempty"`
}

// SourceDefaultEncryption returns the default encryption bucketbridge gives source bucket X
// when the request asks for it: SSE-KMS with KA (its full ARN) and S3 Bucket Keys, so that
// objects written without encryption headers are encrypted with the key the role may decrypt,
// and replicate like those written with SSE-KMS KA. Bucket Keys make the encryption context
// the bucket's ARN, which every KMS condition of the role and the key policies lists.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-key.html
func SourceDefaultEncryption(keyARN string) BucketEncryption {
	on := true
	return BucketEncryption{Rules: []EncryptionRule{{
		ApplyServerSideEncryptionByDefault: &EncryptionByDefault{SSEAlgorithm: SSEKMS, KMSMasterKeyID: &keyARN},
		BucketKeyEnabled:                   &on,
	}}}
}

// DefaultEncryption is what an object written without encryption headers gets.
type DefaultEncryption struct {
	// Algorithm is [SSES3], [SSEKMS], [SSEKMSDSSE], or "" when the bucket has no default
	// encryption (no longer possible on AWS since January 2023).
	Algorithm string
	// KMSKeyID is the default key of SSE-KMS as configured ("" means aws/s3).
	KMSKeyID string
	// BucketKey reports S3 Bucket Keys on.
	BucketKey bool
}

// Default returns what an object written without encryption headers gets.
func (c BucketEncryption) Default() DefaultEncryption {
	for _, r := range c.Rules {
		if d := r.ApplyServerSideEncryptionByDefault; d != nil {
			out := DefaultEncryption{Algorithm: d.SSEAlgorithm, BucketKey: r.BucketKeyEnabled != nil && *r.BucketKeyEnabled}
			if d.KMSMasterKeyID != nil {
				out.KMSKeyID = *d.KMSMasterKeyID
			}
			return out
		}
	}
	return DefaultEncryption{}
}

// IsKMS reports whether the default is SSE-KMS (single or dual layer).
func (d DefaultEncryption) IsKMS() bool { return d.Algorithm == SSEKMS || d.Algorithm == SSEKMSDSSE }

// UsesKey reports whether the default is SSE-KMS with the key keyARN. known is false when the
// configured key is an alias (or aws/s3 by omission), which only KMS can resolve: resolve it
// with DescribeKey and compare the ARN it returns.
func (d DefaultEncryption) UsesKey(keyARN string) (uses, known bool) {
	if !d.IsKMS() {
		return false, true
	}
	id := d.KMSKeyID
	switch {
	case id == "" || strings.HasPrefix(id, "alias/") || strings.Contains(id, ":alias/"):
		return false, false
	case strings.HasPrefix(id, "arn:"):
		return id == keyARN, true
	default:
		return strings.HasSuffix(keyARN, ":key/"+id), true
	}
}

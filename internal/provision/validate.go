package provision

import (
	"net"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Regions are the AWS commercial-partition regions bucketbridge accepts; the
// key ARNs it accepts are in partition "aws" only.
// https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html
var Regions = []string{
	"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2",
	"ap-northeast-3", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2",
	"ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
	"ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1",
	"eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3",
	"il-central-1", "me-central-1", "me-south-1", "mx-central-1", "sa-east-1",
	"us-east-1", "us-east-2", "us-west-1", "us-west-2",
}

// StorageClasses are the storage classes a replication rule may give replicas.
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_Destination.html
var StorageClasses = []string{
	"STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
	"INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR",
}

// DefaultStorageClass is used when a request names none.
const DefaultStorageClass = "STANDARD"

// maxPrefix leaves room under S3's 1,024-byte key limit for the canary
// object, <prefix>bucketbridge-canary/<request id> (56 bytes after the prefix).
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
const maxPrefix = 1024 - 56

const maxTicket = 256

var (
	accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)
	bucketPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	keyARNPattern    = regexp.MustCompile(`^arn:aws:kms:([a-z0-9-]+):([0-9]{12}):key/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)
)

// Validate checks a spec at the door and names every invalid field at once.
func (s Spec) Validate() error {
	var v ValidationError
	s.Source.validate(&v, "source")
	s.Destination.validate(&v, "destination")
	if s.Source.Bucket != "" && s.Source.Bucket == s.Destination.Bucket {
		v.add("destination.bucket", "must differ from source.bucket")
	}
	switch {
	case len(s.Rule.Prefix) > maxPrefix:
		v.add("rule.prefix", "must be at most %d bytes", maxPrefix)
	case strings.ContainsAny(s.Rule.Prefix, "*?$"):
		// In the role policy's resources and conditions these are IAM
		// wildcards and policy variables, which would widen the grant.
		v.add("rule.prefix", "must not contain *, ? or $")
	case HasControl(s.Rule.Prefix):
		v.add("rule.prefix", "must not contain control characters")
	}
	if !slices.Contains(StorageClasses, s.Rule.StorageClass) {
		v.add("rule.storage_class", "must be one of %s", strings.Join(StorageClasses, ", "))
	}
	if utf8.RuneCountInString(s.Ticket) > maxTicket {
		v.add("ticket", "must be at most %d characters", maxTicket)
	} else if HasControl(s.Ticket) {
		v.add("ticket", "must not contain control characters")
	}
	return v.orNil()
}

func (s Side) validate(v *ValidationError, side string) {
	for _, f := range [][2]string{
		{"account_id", s.AccountID}, {"region", s.Region}, {"bucket", s.Bucket}, {"kms_key_arn", s.KMSKeyARN},
	} {
		if f[1] == "" {
			v.add(side+"."+f[0], "is required")
		}
	}
	if !ValidAccountID(s.AccountID) {
		v.add(side+".account_id", "must be a 12-digit AWS account ID")
	}
	if !slices.Contains(Regions, s.Region) {
		v.add(side+".region", "must be an AWS region name such as us-east-1")
	}
	if msg := checkBucketName(s.Bucket); msg != "" {
		v.add(side+".bucket", "%s", msg)
	}
	m := keyARNPattern.FindStringSubmatch(s.KMSKeyARN)
	switch {
	case m == nil:
		v.add(side+".kms_key_arn", "must be a full KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id> (aliases are not accepted)")
	case m[1] != s.Region:
		v.add(side+".kms_key_arn", "key is in region %s but the bucket is in %s", m[1], s.Region)
	case m[2] != s.AccountID:
		v.add(side+".kms_key_arn", "key belongs to account %s, not %s", m[2], s.AccountID)
	}
}

// checkBucketName applies S3's general purpose bucket naming rules and
// returns what is wrong, or "".
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
func checkBucketName(name string) string {
	switch {
	case len(name) < 3 || len(name) > 63:
		return "must be 3 to 63 characters long"
	case !bucketPattern.MatchString(name):
		return "must contain only lowercase letters, digits, dots and hyphens, and begin and end with a letter or digit"
	case strings.Contains(name, ".."):
		return "must not contain two adjacent periods"
	case net.ParseIP(name) != nil:
		return "must not be formatted as an IP address"
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return "must not start with " + p
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return "must not end with " + s
		}
	}
	return ""
}

// HasControl reports whether s holds a control character or invalid UTF-8,
// which no name, prefix or ticket needs and Postgres text cannot hold (NUL).
func HasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	return strings.ContainsFunc(s, unicode.IsControl)
}

// ValidAccountID reports whether id is a 12-digit AWS account ID.
func ValidAccountID(id string) bool { return accountIDPattern.MatchString(id) }

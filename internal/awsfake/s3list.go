package awsfake

import (
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// policyDoc is a parsed policy document.
type policyDoc = policy.Document

// listVersions pages through b's versions as ListObjectVersions does.
func listVersions(b *bucket, in *s3.ListObjectVersionsInput) *s3.ListObjectVersionsOutput {
	prefix := aws.ToString(in.Prefix)
	keys := make([]string, 0, len(b.objects))
	for k := range b.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	max := int(aws.ToInt32(in.MaxKeys))
	if max <= 0 || max > 1000 {
		max = 1000
	}
	out := &s3.ListObjectVersionsOutput{Name: in.Bucket, Prefix: in.Prefix, MaxKeys: aws.Int32(int32(max)), KeyMarker: in.KeyMarker, VersionIdMarker: in.VersionIdMarker}
	keyMarker, vMarker := aws.ToString(in.KeyMarker), aws.ToString(in.VersionIdMarker)
	n := 0
	var lastK, lastV string
	for _, k := range keys {
		if k < keyMarker || (k == keyMarker && vMarker == "") {
			continue
		}
		vs := b.objects[k]
		skipping := k == keyMarker
		for i := len(vs) - 1; i >= 0; i-- {
			o := vs[i]
			if skipping {
				if o.versionID == vMarker {
					skipping = false
				}
				continue
			}
			if n == max {
				out.IsTruncated = aws.Bool(true)
				out.NextKeyMarker, out.NextVersionIdMarker = aws.String(lastK), aws.String(lastV)
				return out
			}
			n++
			lastK, lastV = k, o.versionID
			latest := i == len(vs)-1
			if o.deleteMarker {
				out.DeleteMarkers = append(out.DeleteMarkers, s3types.DeleteMarkerEntry{Key: aws.String(k), VersionId: aws.String(o.versionID), IsLatest: aws.Bool(latest), LastModified: aws.Time(o.modified)})
				continue
			}
			out.Versions = append(out.Versions, s3types.ObjectVersion{
				Key: aws.String(k), VersionId: aws.String(o.versionID), IsLatest: aws.Bool(latest), LastModified: aws.Time(o.modified),
				ETag: aws.String(o.etag), Size: aws.Int64(int64(len(o.data))), StorageClass: s3types.ObjectVersionStorageClassStandard,
			})
		}
	}
	out.IsTruncated = aws.Bool(false)
	return out
}

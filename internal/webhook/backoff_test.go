package webhook

import (
	"testing"
	"time"
)

func TestBackoffDoublesWithJitterUpToTheCap(t *testing.T) {
	t.Parallel()
	for _, base := range []time.Duration{time.Millisecond, 5 * time.Second, 7 * time.Minute} {
		for range 200 {
			prev := time.Duration(0)
			for n := 1; n <= 40; n++ {
				d := backoff(base, n)
				nominal := base
				for i := 1; i < n && nominal < MaxBackoff; i++ {
					nominal *= 2
				}
				if nominal >= MaxBackoff {
					if d != MaxBackoff {
						t.Fatalf("backoff(%s, %d) = %s, want the cap %s", base, n, d, MaxBackoff)
					}
					continue
				}
				if d < nominal || d >= nominal+nominal/2+1 || d > MaxBackoff {
					t.Fatalf("backoff(%s, %d) = %s, want in [%s, %s)", base, n, d, nominal, nominal+nominal/2)
				}
				if d <= prev {
					t.Fatalf("backoff(%s, %d) = %s, not longer than the one before (%s)", base, n, d, prev)
				}
				prev = d
			}
		}
	}
}

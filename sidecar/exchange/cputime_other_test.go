//go:build !unix

package exchange

import "time"

func processCPU() time.Duration { return 0 }

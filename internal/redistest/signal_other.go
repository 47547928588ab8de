//go:build !unix

package redistest

import "os"

// Pause and Resume are not supported here.
var sigStop, sigCont os.Signal

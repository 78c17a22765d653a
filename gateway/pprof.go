package gateway

import (
	"bytes"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/router"
)

// maxCPUProfile bounds the seconds of one CPU profile.
const maxCPUProfile = 5 * time.Minute

// servePprof serves the runtime's profiles on the admin listener at the
// paths net/http/pprof uses, so that `go tool pprof
// http://ADMIN/debug/pprof/profile?seconds=10` works, without linking
// net/http into the gateway: /debug/pprof/ lists the profiles,
// /debug/pprof/profile?seconds=N (default 30) records a CPU profile, and
// /debug/pprof/NAME?debug=N writes the named profile (heap, goroutine,
// allocs, block, mutex, threadcreate).
func servePprof(rc *fasthttp.RequestCtx, name string) {
	switch name {
	case "":
		var b bytes.Buffer
		b.WriteString("profiles: profile?seconds=N (CPU)")
		profiles := pprof.Profiles()
		slices.SortFunc(profiles, func(a, b *pprof.Profile) int {
			if a.Name() < b.Name() {
				return -1
			}
			return 1
		})
		for _, p := range profiles {
			b.WriteString(", " + p.Name() + " (" + strconv.Itoa(p.Count()) + ")")
		}
		b.WriteString("\n")
		rc.SetContentType("text/plain; charset=utf-8")
		rc.SetBody(b.Bytes())
	case "profile":
		seconds := 30
		if s := rc.QueryArgs().Peek("seconds"); len(s) > 0 {
			n, err := strconv.Atoi(string(s))
			if err != nil || n <= 0 || time.Duration(n)*time.Second > maxCPUProfile {
				router.WriteError(rc, fasthttp.StatusBadRequest, "seconds must be a whole number from 1 to "+strconv.Itoa(int(maxCPUProfile/time.Second)), "", "")
				return
			}
			seconds = n
		}
		var b bytes.Buffer
		if err := pprof.StartCPUProfile(&b); err != nil {
			router.WriteError(rc, fasthttp.StatusConflict, "cannot start a CPU profile: "+err.Error(), "", "")
			return
		}
		time.Sleep(time.Duration(seconds) * time.Second)
		pprof.StopCPUProfile()
		rc.SetContentType("application/octet-stream")
		rc.Response.Header.Set("Content-Disposition", `attachment; filename="profile"`)
		rc.SetBody(b.Bytes())
	default:
		p := pprof.Lookup(name)
		if p == nil {
			router.WriteError(rc, fasthttp.StatusNotFound, "unknown profile "+strconv.Quote(name)+"; see /debug/pprof/", "", "")
			return
		}
		debug, _ := strconv.Atoi(string(rc.QueryArgs().Peek("debug")))
		var b bytes.Buffer
		if err := p.WriteTo(&b, debug); err != nil {
			router.WriteError(rc, fasthttp.StatusInternalServerError, "cannot write profile "+name+": "+err.Error(), "", "")
			return
		}
		if debug > 0 {
			rc.SetContentType("text/plain; charset=utf-8")
		} else {
			rc.SetContentType("application/octet-stream")
			rc.Response.Header.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		}
		rc.SetBody(b.Bytes())
	}
}

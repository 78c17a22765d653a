package demo

import (
	"embed"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/valyala/fasthttp"
)

//go:embed routes/*.yaml
var routeFiles embed.FS

// ExampleRequest is a request body for the allocate route.
const ExampleRequest = `{"order":{"id":"o-1","amount":23.5,"payment":"card","account_age_days":400,"hour":9},"drivers":[{"driver_id":1001,"distance_km":1.2,"rating":4.8,"acceptance_rate":0.92,"trips":14},{"driver_id":1002,"distance_km":3.4,"rating":4.5,"acceptance_rate":0.71,"trips":22},{"driver_id":1003,"distance_km":0.8,"rating":4.1,"acceptance_rate":0.55,"trips":5}]}`

// ExampleRankRequest is a request body for the rank-drivers route: an order
// and the candidate drivers whose features come from the feature store.
const ExampleRankRequest = `{"order":{"id":"o-2","amount":61.0,"payment":"cash","account_age_days":12,"hour":23},"candidates":[1001,1007,1013,1042]}`

// Demo is a running set of example models.
type Demo struct {
	// Resolve maps each model's host name to its loopback address.
	Resolve map[string]string
	servers []*fasthttp.Server
}

// Start serves every example model on its own 127.0.0.1 port.
func Start() (*Demo, error) {
	d := &Demo{Resolve: map[string]string{}}
	for _, m := range Models {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			d.Stop()
			return nil, fmt.Errorf("cannot listen for model %s: %w", m.Name, err)
		}
		d.servers = append(d.servers, ServeModel(ln, m))
		d.Resolve[m.Host()] = ln.Addr().String()
	}
	return d, nil
}

// Stop shuts the model servers down.
func (d *Demo) Stop() {
	for _, s := range d.servers {
		_ = s.Shutdown()
	}
}

// WriteRoutes copies the example route files into dir.
func WriteRoutes(dir string) error {
	return fs.WalkDir(routeFiles, "routes", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := routeFiles.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o644)
	})
}

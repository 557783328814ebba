package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

func BenchmarkZZSFTP(b *testing.B) {
	w := newSSHWorld(b)
	local := filepath.Join(b.TempDir(), "payload.bin")
	writeRandomFile(b, local, transferSize)
	src := filepath.Join(w.srv.Dir(), "src.bin")
	check(b, os.Link(local, src))
	back := filepath.Join(b.TempDir(), "back.bin")
	mk := func(opts ...sftp.ClientOption) func() error {
		sc, err := sftp.NewClient(w.raw, opts...)
		check(b, err)
		return func() error {
			in, err := sc.Open(src)
			check(b, err)
			out, err := os.Create(back)
			check(b, err)
			_, err = io.Copy(out, in)
			in.Close()
			out.Close()
			return err
		}
	}
	ctx := context.Background()
	ways := []struct {
		name string
		f    func() error
	}{
		{"pipe", func() error { return w.pipeDown("src.bin", back) }},
		{"sdk", func() error { return w.tr.Download(ctx, w.ep, "src.bin", back, nil) }},
		{"sftp-default", mk()},
		{"sftp-conc", mk(sftp.UseConcurrentWrites(true))},
		{"sftp-req128", mk(sftp.MaxConcurrentRequestsPerFile(128))},
		{"sftp-req256", mk(sftp.MaxConcurrentRequestsPerFile(256))},
	}
	sums := make([]time.Duration, len(ways))
	n := 0
	for b.Loop() {
		for i, wy := range ways {
			t := time.Now()
			check(b, wy.f())
			sums[i] += time.Since(t)
		}
		n++
	}
	for i, wy := range ways {
		b.ReportMetric(float64(transferSize)*float64(n)/sums[i].Seconds()/1e6, wy.name+"-MB/s")
	}
}

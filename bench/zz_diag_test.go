package bench

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
)

func BenchmarkZZSFTP(b *testing.B) {
	w := newSSHWorld(b)
	local := filepath.Join(b.TempDir(), "payload.bin")
	writeRandomFile(b, local, transferSize)
	check(b, os.Link(local, filepath.Join(w.srv.Dir(), "src.bin")))
	back := filepath.Join(b.TempDir(), "back.bin")
	for _, c := range []struct {
		name string
		opts []sftp.ClientOption
	}{
		{"default", nil},
		{"conc", []sftp.ClientOption{sftp.UseConcurrentWrites(true)}},
		{"req128", []sftp.ClientOption{sftp.MaxConcurrentRequestsPerFile(128)}},
		{"req256", []sftp.ClientOption{sftp.MaxConcurrentRequestsPerFile(256)}},
		{"pkt128k", []sftp.ClientOption{sftp.MaxPacketUnchecked(128 << 10)}},
		{"pkt128k-req256", []sftp.ClientOption{sftp.MaxPacketUnchecked(128 << 10), sftp.MaxConcurrentRequestsPerFile(256)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			sc, err := sftp.NewClient(w.raw, c.opts...)
			check(b, err)
			defer sc.Close()
			b.SetBytes(transferSize)
			for b.Loop() {
				in, err := sc.Open(filepath.Join(w.srv.Dir(), "src.bin"))
				check(b, err)
				out, err := os.Create(back)
				check(b, err)
				_, err = io.Copy(out, in)
				check(b, err)
				in.Close()
				out.Close()
				fi, _ := os.Stat(back)
				if fi.Size() != transferSize {
					b.Fatalf("short: %d", fi.Size())
				}
			}
		})
	}
}

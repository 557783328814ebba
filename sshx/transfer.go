package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pkg/sftp"

	"github.com/agentlab-sdk/agentlab"
)

// maxTreeDepth bounds directory recursion in downloads, against a server
// that invents an endless tree.
const maxTreeDepth = 128

// ErrUnsafePath reports a name from the guest that would escape the local
// destination ("..", a slash, an absolute or empty name), or a local path
// that is a symlink where a file or directory is to be written.
var ErrUnsafePath = errors.New("sshx: unsafe path")

// Upload copies the local file or directory tree at localPath to
// remotePath, creating remote directories as needed and keeping permission
// bits (setuid, setgid and sticky bits are dropped). Relative remote paths
// are relative to the login directory. Symlinks inside a local tree are
// skipped; a symlink given as localPath is followed. Progress, when set, is
// called with the remote path of each file as bytes are written.
//
// A single regular file is streamed through an exec session (the guest's
// POSIX shell runs mkdir -p, cat, wc, chmod and mv): it is written to a
// hidden temporary file in the destination directory, its size is checked
// (ErrSizeMismatch when it differs from the local file's) and it is renamed
// over remotePath, so a failed or cancelled upload leaves the destination
// as it was; a directory at remotePath is refused. An existing file, or a
// symlink, at remotePath is replaced rather than written through. Trees go
// over SFTP, file by file, overwriting files in place; so does a single
// file when the guest refuses exec requests or runs no shell for them.
func (t *Transport) Upload(ctx context.Context, ep agentlab.Endpoint, localPath, remotePath string,
	opts *agentlab.TransferOptions) error {
	t.activity(ep.VMID)
	x := &transfer{ctx: ctx, t: t, ep: ep, progress: progressFunc(opts)}
	if err := x.upload(localPath, remotePath); err != nil {
		return fmt.Errorf("upload %s to vm %d: %w", localPath, ep.VMID, err)
	}
	return nil
}

// Download copies the remote file or directory tree at remotePath to
// localPath, keeping permission bits (setuid, setgid and sticky dropped).
// A symlink given as remotePath is followed; symlinks, devices, pipes and
// sockets inside a remote tree are skipped, never created locally, so
// nothing the guest names can point outside localPath. A name from the
// guest that is not a single local path element fails the download with
// ErrUnsafePath, as does a local symlink where a file or directory is to
// be written. Existing local files are overwritten. Progress, when set, is
// called with the remote path of each file as bytes arrive.
//
// A single regular file (found with an SFTP stat) is streamed from `cat`
// in an exec session, or over SFTP when exec is unavailable, into a
// temporary file in localPath's directory, which must exist; the byte
// count is checked against the stat (ErrSizeMismatch) and the file renamed
// over localPath, so a failed or cancelled download leaves localPath as it
// was. Files of a tree are written in place over SFTP.
func (t *Transport) Download(ctx context.Context, ep agentlab.Endpoint, remotePath, localPath string,
	opts *agentlab.TransferOptions) error {
	t.activity(ep.VMID)
	x := &transfer{ctx: ctx, t: t, ep: ep, progress: progressFunc(opts)}
	if err := x.download(remotePath, localPath); err != nil {
		return fmt.Errorf("download %s from vm %d: %w", remotePath, ep.VMID, err)
	}
	return nil
}

func progressFunc(opts *agentlab.TransferOptions) func(string, int64, int64) {
	if opts == nil || opts.Progress == nil {
		return func(string, int64, int64) {}
	}
	return opts.Progress
}

// transfer is one Upload or Download in progress.
type transfer struct {
	ctx      context.Context
	t        *Transport
	ep       agentlab.Endpoint
	sc       *sftp.Client // opened by sftp on first use
	progress func(path string, done, total int64)
}

// sftp opens the SFTP client of the pooled connection on first use.
func (x *transfer) sftp() (*sftp.Client, error) {
	if x.sc != nil {
		return x.sc, nil
	}
	sc, err := x.t.sftp(x.ctx, x.ep)
	if err != nil {
		return nil, err
	}
	x.sc = sc
	return sc, nil
}

func (x *transfer) upload(local, remote string) error {
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		err := x.streamUpload(local, remote, fi)
		if !errors.Is(err, errNoExec) {
			return err
		}
	}
	sc, err := x.sftp()
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if dir := path.Dir(remote); dir != "." && dir != "/" {
			if err := sc.MkdirAll(dir); err != nil {
				return fmt.Errorf("mkdir %s: %w", dir, err)
			}
		}
		return x.uploadFile(local, remote, fi)
	}
	var dirs []dirMode
	err = filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := x.ctx.Err(); err != nil {
			return ctxErr(err)
		}
		rel, err := filepath.Rel(local, p)
		if err != nil {
			return err
		}
		dst := path.Join(remote, filepath.ToSlash(rel))
		return x.uploadEntry(p, dst, d, &dirs)
	})
	if err != nil {
		return err
	}
	return x.chmodDirs(dirs, sc.Chmod)
}

// streamUpload sends one regular file through an exec session.
func (x *transfer) streamUpload(local, remote string, fi fs.FileInfo) error {
	in, err := os.Open(local)
	if err != nil {
		return err
	}
	defer in.Close()
	r := &progressReader{ctx: x.ctx, r: in, size: fi.Size(), path: remote, fn: x.progress}
	x.progress(remote, 0, fi.Size())
	return x.t.streamUpload(x.ctx, x.ep, r, fi.Size(), fi.Mode(), remote)
}

// dirMode is a directory whose mode is set after its contents are written
// (a read-only directory would refuse them).
type dirMode struct {
	path string
	mode fs.FileMode
}

func (x *transfer) uploadEntry(src, dst string, d fs.DirEntry, dirs *[]dirMode) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case d.IsDir():
		if err := x.sc.MkdirAll(dst); err != nil {
			return fmt.Errorf("mkdir %s: %w", dst, err)
		}
		*dirs = append(*dirs, dirMode{dst, fi.Mode().Perm()})
		return nil
	case fi.Mode().IsRegular():
		return x.uploadFile(src, dst, fi)
	}
	return nil // symlinks and special files are skipped
}

func (x *transfer) uploadFile(src, dst string, fi fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := x.sc.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	r := &progressReader{ctx: x.ctx, r: in, size: fi.Size(), path: dst, fn: x.progress}
	x.progress(dst, 0, fi.Size())
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := x.sc.Chmod(dst, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", dst, err)
	}
	return nil
}

// chmodDirs applies directory modes deepest first.
func (x *transfer) chmodDirs(dirs []dirMode, chmod func(string, os.FileMode) error) error {
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := chmod(dirs[i].path, dirs[i].mode); err != nil {
			return fmt.Errorf("chmod %s: %w", dirs[i].path, err)
		}
	}
	return nil
}

func (x *transfer) download(remote, local string) error {
	sc, err := x.sftp()
	if err != nil {
		return err
	}
	fi, err := sc.Stat(remote)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file or directory: %w", remote, ErrUnsafePath)
		}
		return x.downloadSingle(remote, local, fi)
	}
	if err := os.MkdirAll(local, 0o700); err != nil {
		return err
	}
	var dirs []dirMode
	dirs = append(dirs, dirMode{local, fi.Mode().Perm()})
	if err := x.downloadDir(remote, local, 0, &dirs); err != nil {
		return err
	}
	return x.chmodDirs(dirs, os.Chmod)
}

func (x *transfer) downloadDir(remote, local string, depth int, dirs *[]dirMode) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("%s: deeper than %d levels: %w", remote, maxTreeDepth, ErrUnsafePath)
	}
	entries, err := x.sc.ReadDir(remote)
	if err != nil {
		return fmt.Errorf("read dir %s: %w", remote, err)
	}
	for _, e := range entries {
		if err := x.ctx.Err(); err != nil {
			return ctxErr(err)
		}
		if err := x.downloadEntry(remote, local, e, depth, dirs); err != nil {
			return err
		}
	}
	return nil
}

func (x *transfer) downloadEntry(remote, local string, e fs.FileInfo, depth int,
	dirs *[]dirMode) error {
	name := e.Name()
	if name == "." || name == ".." {
		return nil
	}
	if !safeName(name) {
		return fmt.Errorf("name %q in %s: %w", name, remote, ErrUnsafePath)
	}
	src, dst := path.Join(remote, name), filepath.Join(local, name)
	switch {
	case e.IsDir():
		if err := mkdirNoFollow(dst); err != nil {
			return err
		}
		*dirs = append(*dirs, dirMode{dst, e.Mode().Perm()})
		return x.downloadDir(src, dst, depth+1, dirs)
	case e.Mode().IsRegular():
		return x.downloadFile(src, dst, e)
	}
	return nil // symlinks and special files are skipped
}

// safeName reports whether name is exactly one local path element. pkg/sftp
// already reduces listed names to their last element; this is the second
// line of defence.
func safeName(name string) bool {
	return filepath.IsLocal(name) && name != "." &&
		!strings.ContainsRune(name, '/') && !strings.ContainsRune(name, 0) &&
		!strings.ContainsRune(name, filepath.Separator)
}

// mkdirNoFollow creates dir, or accepts an existing real directory; a
// symlink in its place is refused.
func mkdirNoFollow(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory: %w", dir, ErrUnsafePath)
	}
	return nil
}

// downloadSingle fetches the regular file src into a temporary file
// beside dst and renames it over dst once the byte count matched fi.
func (x *transfer) downloadSingle(src, dst string, fi fs.FileInfo) error {
	if err := checkLocalTarget(dst); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".agentlab-*.tmp")
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := &progressWriter{ctx: x.ctx, w: tmp, size: fi.Size(), path: src, fn: x.progress}
	x.progress(src, 0, fi.Size())
	err = x.t.streamDownload(x.ctx, x.ep, src, fi.Size(), w)
	if errors.Is(err, errNoExec) {
		err = x.sftpDownload(src, fi.Size(), w)
	}
	if err != nil {
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	keep = true
	return nil
}

// checkLocalTarget refuses a symlink or a directory at dst.
func checkLocalTarget(dst string) error {
	fi, err := os.Lstat(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink: %w", dst, ErrUnsafePath)
	case fi.IsDir():
		return fmt.Errorf("%s is a directory", dst)
	}
	return nil
}

// sftpDownload copies the remote file src over SFTP into w and checks
// that size bytes arrived.
func (x *transfer) sftpDownload(src string, size int64, w io.Writer) error {
	in, err := x.sc.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	n, err := io.Copy(w, in)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if n != size {
		return fmt.Errorf("received %d bytes, expected %d: %w", n, size, ErrSizeMismatch)
	}
	return nil
}

func (x *transfer) downloadFile(src, dst string, fi fs.FileInfo) error {
	in, err := x.sc.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC | syscall.O_NOFOLLOW
	out, err := os.OpenFile(dst, flags, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("%s is a symlink: %w", dst, ErrUnsafePath)
	}
	if err != nil {
		return err
	}
	w := &progressWriter{ctx: x.ctx, w: out, size: fi.Size(), path: src, fn: x.progress}
	x.progress(src, 0, fi.Size())
	_, err = io.Copy(w, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	return os.Chmod(dst, fi.Mode().Perm())
}

// progressReader reports bytes read and stops when ctx ends. Size lets
// sftp pick concurrent writes.
type progressReader struct {
	ctx  context.Context
	r    io.Reader
	size int64
	done int64
	path string
	fn   func(string, int64, int64)
}

// Read fails with the ctx error once ctx ends.
func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, ctxErr(err)
	}
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.fn(p.path, p.done, p.size)
	}
	return n, err
}

// Size returns the expected number of bytes.
func (p *progressReader) Size() int64 { return p.size }

// progressWriter reports bytes written and stops when ctx ends.
type progressWriter struct {
	ctx  context.Context
	w    io.Writer
	size int64
	done int64
	path string
	fn   func(string, int64, int64)
}

// Write fails with the ctx error once ctx ends.
func (p *progressWriter) Write(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, ctxErr(err)
	}
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn(p.path, p.done, p.size)
	return n, err
}

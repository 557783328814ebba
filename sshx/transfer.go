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
// remotePath over SFTP, creating remote directories as needed and keeping
// permission bits (setuid, setgid and sticky bits are dropped). Relative
// remote paths are relative to the login directory. Symlinks inside a
// local tree are skipped; a symlink given as localPath is followed. Files
// that exist are overwritten. Progress, when set, is called with the
// remote path of each file as bytes are written.
func (t *Transport) Upload(ctx context.Context, ep agentlab.Endpoint, localPath, remotePath string,
	opts *agentlab.TransferOptions) error {
	t.activity(ep.VMID)
	sc, err := t.sftp(ctx, ep)
	if err != nil {
		return fmt.Errorf("upload to vm %d: %w", ep.VMID, err)
	}
	x := &transfer{ctx: ctx, sc: sc, progress: progressFunc(opts)}
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
func (t *Transport) Download(ctx context.Context, ep agentlab.Endpoint, remotePath, localPath string,
	opts *agentlab.TransferOptions) error {
	t.activity(ep.VMID)
	sc, err := t.sftp(ctx, ep)
	if err != nil {
		return fmt.Errorf("download from vm %d: %w", ep.VMID, err)
	}
	x := &transfer{ctx: ctx, sc: sc, progress: progressFunc(opts)}
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
	sc       *sftp.Client
	progress func(path string, done, total int64)
}

func (x *transfer) upload(local, remote string) error {
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if dir := path.Dir(remote); dir != "." && dir != "/" {
			if err := x.sc.MkdirAll(dir); err != nil {
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
	return x.chmodDirs(dirs, x.sc.Chmod)
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
	fi, err := x.sc.Stat(remote)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file or directory: %w", remote, ErrUnsafePath)
		}
		return x.downloadFile(remote, local, fi)
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

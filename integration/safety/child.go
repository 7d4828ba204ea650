package safety

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// EnvChild switches a test binary into holder mode: it holds the JSON of a
// ChildSpec. The test named by the run pattern given to StartChild must call
// RunChild when IsChild reports true (see the integration package's
// TestMain).
const EnvChild = "QUORUMLOCK_SAFETY_CHILD"

// ChildSpec is what a child process runs: its holders (goroutines sharing
// one client), the client, the register, and the file its records go to
// (JSON lines).
type ChildSpec struct {
	Client   ClientSpec   `json:"client"`
	Register string       `json:"register"`
	Holders  []HolderSpec `json:"holders"`
	Out      string       `json:"out"`
}

// IsChild reports whether this process was started by StartChild.
func IsChild() bool { return os.Getenv(EnvChild) != "" }

// RunChild runs the holders of the ChildSpec in EnvChild and writes their
// records to spec.Out, one JSON object per line.
func RunChild(ctx context.Context) error {
	var spec ChildSpec
	if err := json.Unmarshal([]byte(os.Getenv(EnvChild)), &spec); err != nil {
		return fmt.Errorf("safety: child: bad %s: %w", EnvChild, err)
	}
	records, err := RunHolders(ctx, spec.Client, spec.Register, spec.Holders)
	if err != nil {
		return err
	}
	f, err := os.Create(spec.Out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range records {
		if err := enc.Encode(r); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Child is a running holder process.
type Child struct {
	spec ChildSpec
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

// StartChild runs this very binary (os.Args[0]) again with
// -test.run=<run> and EnvChild set to spec, so that the named test runs
// the holders (RunChild). ctx bounds the child: it is killed when ctx ends.
func StartChild(ctx context.Context, run string, spec ChildSpec) (*Child, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	c := &Child{spec: spec, done: make(chan struct{})}
	c.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
	c.cmd.Env = append(os.Environ(), EnvChild+"="+string(js))
	c.cmd.Stdout = &c.out
	c.cmd.Stderr = &c.out
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("safety: start a holder process: %w", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Wait waits for the child to exit and reads its records.
func (c *Child) Wait() ([]Record, error) {
	<-c.done
	if c.err != nil {
		return nil, fmt.Errorf("safety: holder process %d: %w; its output:\n%s", c.Pid(), c.err, c.out.String())
	}
	data, err := os.ReadFile(c.spec.Out)
	if err != nil {
		return nil, fmt.Errorf("safety: holder process %d left no records: %w; its output:\n%s", c.Pid(), err, c.out.String())
	}
	var records []Record
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var r Record
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			return records, nil
		}
		if err != nil {
			return nil, fmt.Errorf("safety: records of holder process %d: %w", c.Pid(), err)
		}
		records = append(records, r)
	}
}

// syncBuffer is a bytes.Buffer safe for the two writers of a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

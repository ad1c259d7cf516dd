package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/report"
)

// goLoad is the second HTTP load client (-http-clients go): wrk reads responses
// 8 KiB at a time, so on a 64 MiB body the client's read syscalls can be what
// limits both servers; this client reads 1 MiB at a time. conns keep-alive
// connections each loop GETs until d has passed; bytes of unfinished
// responses count towards throughput, their latencies do not.
func goLoad(url string, conns int, d time.Duration) (httpTrial, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		total     atomic.Int64
		mu        sync.Mutex
		latencies []float64
		errs      int
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for ctx.Err() == nil {
				t0 := time.Now()
				err := func() error {
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
					if err != nil {
						return err
					}
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("GET %s: %s", url, resp.Status)
					}
					var n int64
					for {
						m, err := resp.Body.Read(buf)
						n += int64(m)
						total.Add(int64(m))
						if err == io.EOF {
							break
						}
						if err != nil {
							return err
						}
					}
					if n != resp.ContentLength {
						return fmt.Errorf("GET %s: %d bytes, want %d", url, n, resp.ContentLength)
					}
					return nil
				}()
				mu.Lock()
				switch {
				case err == nil:
					latencies = append(latencies, time.Since(t0).Seconds()*1e3)
				case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
					// cut off by the end of the trial, not a failure
				default:
					errs++
					if firstErr == nil {
						firstErr = err
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(latencies) == 0 {
		return httpTrial{}, fmt.Errorf("no GET of %s finished in %s (first error: %v)", url, d, firstErr)
	}
	return httpTrial{
		mibps:    float64(total.Load()) / (1 << 20) / elapsed.Seconds(),
		p99ms:    report.Percentile(latencies, 99),
		requests: len(latencies),
		errors:   errs,
	}, nil
}

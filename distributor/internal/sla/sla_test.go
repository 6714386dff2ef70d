package sla

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

var cfg = Config{EvalPeriod: 5 * time.Second, Window: time.Minute, ErrorRateThreshold: 0.05, MaxConsecutiveKafkaErrors: 5}

func send(tr *Tracker, perSecond, faultsPerSecond int, seconds int) {
	for s := 0; s < seconds; s++ {
		for i := 0; i < perSecond; i++ {
			tr.Record(i < faultsPerSecond)
		}
		time.Sleep(time.Second)
	}
}

func TestHealthyUnderTheThresholdAndDownAboveIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(cfg)
		send(tr, 100, 4, 10) // 4% faults
		v := tr.Evaluate(0)
		require.True(t, v.HealthUp)
		require.InDelta(t, 0.96, v.SuccessRatio, 1e-9)

		send(tr, 100, 30, 10) // now 30%: over the last minute 17%
		v = tr.Evaluate(0)
		require.False(t, v.HealthUp)
		require.InDelta(t, 0.17, v.ErrorRate, 1e-9)
	})
}

func TestTheWindowForgetsOldFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(cfg)
		send(tr, 10, 10, 5) // an outage
		require.False(t, tr.Evaluate(0).HealthUp)
		send(tr, 10, 0, 61) // a clean minute
		v := tr.Evaluate(0)
		require.True(t, v.HealthUp)
		require.Equal(t, 1.0, v.SuccessRatio)
	})
}

func TestConsecutiveKafkaErrorsTakeHealthDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(cfg)
		send(tr, 1000, 0, 1)
		require.True(t, tr.Evaluate(4).HealthUp)
		require.False(t, tr.Evaluate(5).HealthUp)
	})
}

func TestNoTrafficKeepsTheLastVerdict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(cfg)
		require.True(t, tr.Evaluate(0).HealthUp, "starts healthy")
		send(tr, 10, 10, 3)
		require.False(t, tr.Evaluate(0).HealthUp)
		time.Sleep(10 * time.Minute) // silence
		v := tr.Evaluate(0)
		require.False(t, v.HealthUp, "no traffic: still the last verdict")
		require.Equal(t, 0.0, v.SuccessRatio)
	})
}

func TestRunEvaluatesEveryPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := New(cfg)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { tr.Run(ctx, func() int64 { return 0 }); close(done) }()
		for i := 0; i < 10; i++ {
			tr.Record(true)
		}
		time.Sleep(cfg.EvalPeriod + time.Millisecond)
		synctest.Wait()
		require.False(t, tr.Last().HealthUp)
		cancel()
		<-done
	})
}

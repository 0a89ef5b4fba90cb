package shard_test

import (
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

func TestForUserAndOfIDOrKey(t *testing.T) {
	if shard.ForUser("usr_1") != shard.ForKey("usr_1") {
		t.Error("ForUser differs from ForKey")
	}
	id := ids.NewInShard("ord", time.Now(), 77)
	if got := shard.OfIDOrKey(id); got != 77 {
		t.Errorf("OfIDOrKey(id in shard 77) = %d", got)
	}
	old := ids.New("ord", time.Now())
	if got := shard.OfIDOrKey(old); got != shard.ForKey(old) {
		t.Errorf("OfIDOrKey(old id) = %d, want ForKey's %d", got, shard.ForKey(old))
	}
}

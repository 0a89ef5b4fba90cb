package bus

import "time"

// AckWait shortens a subscription's ack wait, so that tests can see what
// happens to messages that wait longer than it.
func AckWait(d time.Duration) SubOption { return func(o *subOptions) { o.ackWait = d } }

// RetireCheck makes a retiring subscription look for the end of its backlog
// every d, so that tests need not wait the default ten seconds.
func RetireCheck(d time.Duration) SubOption { return func(o *subOptions) { o.retireCheck = d } }

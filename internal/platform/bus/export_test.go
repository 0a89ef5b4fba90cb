package bus

import "time"

// AckWait shortens a subscription's ack wait, so that tests can see what
// happens to messages that wait longer than it.
func AckWait(d time.Duration) SubOption { return func(o *subOptions) { o.ackWait = d } }

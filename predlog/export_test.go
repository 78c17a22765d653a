package predlog

// SinkPID returns the pid of l's sink process, or 0 while it is down.
func SinkPID(l *Log) int {
	p, ok := l.sink.(*processSink)
	if !ok {
		return 0
	}
	return int(p.pid.Load())
}

// SinkOf returns l's sink.
func SinkOf(l *Log) Sink { return l.sink }

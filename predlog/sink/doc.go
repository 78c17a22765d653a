// Package sink owns where prediction log records are stored: Parquet files
// partitioned by route and hour (file://, FileSink) or a Kafka topic
// (kafka://, KafkaSink), the readers of those files (Read), and the sink
// process lariat-predlog runs (Main, Serve), which the gateway's log feeds
// over a pipe so that the gateway links neither Parquet nor Kafka.
package sink

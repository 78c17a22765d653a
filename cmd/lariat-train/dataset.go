package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/training/dataset"
)

// datasetCmd joins labels to the features the gateway served.
func datasetCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dataset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o dataset.Options
	fs.StringVar(&o.Predictions, "predictions", "", "prediction log folder written by lariat serve --prediction-log file:///DIR (or one of its files)")
	fs.StringVar(&o.Labels, "labels", "", "CSV file of outcomes: the join column, label columns and optionally entity keys (e.g. driver_id)")
	fs.StringVar(&o.On, "on", "request_id", "join column of the labels, matched with the records' request ids (X-Request-Id)")
	fs.StringVar(&o.Out, "out", "", "Parquet file to write: one row per label and entity with the feature values served")
	fs.StringVar(&o.Route, "route", "", "only records of this route")
	output := fs.String("output", "text", "summary format: text or json")
	cli.Alias(fs, "o", "output")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if o.Predictions == "" || o.Labels == "" || o.Out == "" {
		return cli.Usagef("dataset needs --predictions DIR, --labels FILE and --out FILE")
	}
	if *output != "text" && *output != "json" {
		return cli.Usagef("--output must be text or json, got %q", *output)
	}
	st, err := dataset.Build(o)
	if err != nil {
		return err
	}
	if *output == "json" {
		return cli.WriteJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "wrote %d rows to %s: %d of %d labels matched a served request\n", st.Rows, o.Out, st.Matched, st.Labels)
	fmt.Fprintf(stdout, "features: %s\nlabels: %s\n", strings.Join(st.Features, ", "), strings.Join(st.LabelColumns, ", "))
	if len(st.Unmatched) > 0 {
		fmt.Fprintf(stdout, "no record for %s: %s\n", o.On, strings.Join(st.Unmatched, ", "))
	}
	return nil
}

package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/training/report"
)

// reportCmd measures model versions against their experiments from a
// prediction log.
func reportCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o report.Options
	fs.StringVar(&o.Predictions, "predictions", "", "prediction log folder written by lariat serve --prediction-log file:///DIR (or one of its files)")
	fs.StringVar(&o.Route, "route", "", "only this route")
	fs.StringVar(&o.Output, "distribution", "", "logged output whose distribution is shown, e.g. response.body.score (default: each route's first numeric output)")
	fs.StringVar(&o.Labels, "labels", "", "CSV file of outcomes (optional): adds accuracy, AUC and log-loss with confidence intervals and tests")
	fs.StringVar(&o.On, "on", "request_id", "join column of the labels (the answers' X-Request-Id)")
	fs.StringVar(&o.Label, "label", "label", "label column (0 or 1)")
	fs.StringVar(&o.Score, "score", "", "logged output read as the predicted probability of label 1 (default: --distribution)")
	fs.IntVar(&o.Bins, "bins", 20, "histogram bins of the output distribution")
	fs.Float64Var(&o.Alpha, "alpha", 0.05, "significance level of the tests between variants")
	htmlOut := fs.String("html", "", "write the self-contained HTML report to this file")
	jsonOut := fs.String("json", "", "write the JSON report to this file (\"-\": standard output; the default when --html is not given)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if o.Predictions == "" {
		return cli.Usagef("report needs --predictions DIR")
	}
	if *htmlOut == "" && *jsonOut == "" {
		*jsonOut = "-"
	}
	rep, err := report.Build(o)
	if err != nil {
		return err
	}
	write := func(path string, w func(io.Writer) error) error {
		if path == "-" {
			return w(stdout)
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cannot write report: %w", err)
		}
		if err := w(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("cannot write report: %w", err)
		}
		fmt.Fprintf(stderr, "wrote %s\n", path)
		return nil
	}
	if *jsonOut != "" {
		if err := write(*jsonOut, rep.WriteJSON); err != nil {
			return err
		}
	}
	if *htmlOut != "" {
		if err := write(*htmlOut, rep.WriteHTML); err != nil {
			return err
		}
	}
	return nil
}

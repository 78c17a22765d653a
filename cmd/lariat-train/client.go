package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/training"
)

// clientFlags are shared by the client commands.
type clientFlags struct {
	server  string
	timeout time.Duration
	output  string
}

func (cf *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.server, "train-server", "http://127.0.0.1:8060", "lariat-train server URL")
	cli.Alias(fs, "server", "train-server")
	fs.DurationVar(&cf.timeout, "timeout", 30*time.Second, "limit on each request")
	fs.StringVar(&cf.output, "output", "table", "output format: table or json")
	cli.Alias(fs, "o", "output")
}

// clientCommand runs submit, status, logs, cancel, list and study verbs.
func clientCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	verb := args[0]
	rest := args[1:]
	if verb == "study" {
		if len(rest) == 0 {
			return cli.Usagef("study needs a verb: submit, status, list or cancel")
		}
		verb, rest = "study "+rest[0], rest[1:]
	}
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	var wait, follow bool
	var study, phase string
	switch verb {
	case "submit", "study submit":
		fs.BoolVar(&wait, "wait", false, "wait for the end and exit 3 when it failed")
		if verb == "submit" {
			fs.BoolVar(&follow, "follow", false, "stream the job's output, then wait for its end")
		}
	case "cancel":
		fs.BoolVar(&wait, "wait", false, "wait until the job has stopped")
	case "logs":
		fs.BoolVar(&follow, "follow", false, "keep streaming until the job ends")
		cli.Alias(fs, "f", "follow")
	case "list":
		fs.StringVar(&study, "study", "", "only the trials of this study")
		fs.StringVar(&phase, "phase", "", "only jobs in this phase (Pending, Running, Succeeded, Failed)")
	case "status", "study status", "study list", "study cancel":
	default:
		return cli.Usagef("unknown command %q", verb)
	}
	pos, err := cli.ParseInterspersed(fs, rest)
	if err != nil {
		return err
	}
	if cf.output != "table" && cf.output != "json" {
		return cli.Usagef("-output must be table or json, got %q", cf.output)
	}
	wantArgs := map[string]int{"submit": 1, "status": 1, "logs": 1, "cancel": 1, "list": 0,
		"study submit": 1, "study status": 1, "study list": 0, "study cancel": 1}[verb]
	if len(pos) != wantArgs {
		return cli.Usagef("%s takes %d argument(s), got %d: %q", verb, wantArgs, len(pos), pos)
	}
	c := training.NewClient(cf.server, &http.Client{Timeout: cf.timeout})
	p := printer{w: stdout, json: cf.output == "json"}
	rctx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, cf.timeout) }

	switch verb {
	case "submit":
		data, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		if _, err := training.ParseJobSpec(pos[0], data); err != nil {
			return err
		}
		cctx, cancel := rctx()
		j, err := c.SubmitJob(cctx, data)
		cancel()
		if err != nil {
			return err
		}
		if !wait && !follow {
			return p.job(&j)
		}
		fmt.Fprintf(stderr, "submitted job %s\n", j.ID)
		if follow {
			if err := streamLogs(ctx, c, j.ID, stdout); err != nil {
				return err
			}
		}
		return waitJob(ctx, c, j.ID, p)
	case "status":
		cctx, cancel := rctx()
		defer cancel()
		j, err := c.Job(cctx, pos[0])
		if err != nil {
			return err
		}
		return p.job(&j)
	case "logs":
		if follow {
			return streamLogs(ctx, c, pos[0], stdout)
		}
		cctx, cancel := rctx()
		defer cancel()
		rc, err := c.Logs(cctx, pos[0], false)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(stdout, rc)
		return err
	case "cancel":
		cctx, cancel := rctx()
		j, err := c.CancelJob(cctx, pos[0])
		cancel()
		if err != nil {
			return err
		}
		if !wait {
			fmt.Fprintf(stdout, "cancelling %s\n", j.ID)
			return nil
		}
		j, err = c.WaitJob(ctx, j.ID, time.Second)
		if err != nil {
			return err
		}
		return p.job(&j)
	case "list":
		cctx, cancel := rctx()
		defer cancel()
		jobs, err := c.Jobs(cctx, training.JobFilter{Study: study, Phase: training.Phase(phase)})
		if err != nil {
			return err
		}
		return p.jobs(jobs)
	case "study submit":
		data, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		if _, err := training.ParseStudySpec(pos[0], data); err != nil {
			return err
		}
		cctx, cancel := rctx()
		s, err := c.SubmitStudy(cctx, data)
		cancel()
		if err != nil {
			return err
		}
		if !wait {
			return p.study(&s)
		}
		fmt.Fprintf(stderr, "submitted study %s\n", s.ID)
		s, err = c.WaitStudy(ctx, s.ID, time.Second)
		if err != nil {
			return err
		}
		if err := p.study(&s); err != nil {
			return err
		}
		if s.Status.Phase != training.PhaseSucceeded {
			return fmt.Errorf("study %s %w", s.ID, errJobFailed)
		}
		return nil
	case "study status":
		cctx, cancel := rctx()
		defer cancel()
		s, err := c.Study(cctx, pos[0])
		if err != nil {
			return err
		}
		return p.study(&s)
	case "study list":
		cctx, cancel := rctx()
		defer cancel()
		list, err := c.Studies(cctx)
		if err != nil {
			return err
		}
		return p.studies(list)
	case "study cancel":
		cctx, cancel := rctx()
		defer cancel()
		s, err := c.CancelStudy(cctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "cancelling %s\n", s.ID)
		return nil
	}
	return nil
}

func streamLogs(ctx context.Context, c *training.Client, id string, w io.Writer) error {
	rc, err := c.Logs(ctx, id, true)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

func waitJob(ctx context.Context, c *training.Client, id string, p printer) error {
	j, err := c.WaitJob(ctx, id, time.Second)
	if err != nil {
		return err
	}
	if err := p.job(&j); err != nil {
		return err
	}
	if j.Status.Phase != training.PhaseSucceeded {
		return fmt.Errorf("job %s %w", j.ID, errJobFailed)
	}
	return nil
}

// printer writes jobs and studies as tables or JSON.
type printer struct {
	w    io.Writer
	json bool
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func fmtMetrics(m map[string]float64) string {
	return cli.JoinMap(m, " ", func(f float64) string { return fmt.Sprintf("%g", f) })
}

// lastReason returns the reason of the job's newest condition.
func lastReason(st *training.JobStatus) string {
	var c training.Condition
	for _, x := range st.Conditions {
		if x.Status == training.ConditionTrue && !x.LastTransitionTime.Before(c.LastTransitionTime) {
			c = x
		}
	}
	return c.Reason
}

func (p printer) status(tw io.Writer, st *training.JobStatus) {
	fmt.Fprintf(tw, "Phase:\t%s\n", st.Phase)
	fmt.Fprintf(tw, "Started:\t%s\n", fmtTime(st.StartTime))
	fmt.Fprintf(tw, "Finished:\t%s\n", fmtTime(st.CompletionTime))
	if st.ExitCode != nil {
		fmt.Fprintf(tw, "Exit code:\t%d\n", *st.ExitCode)
	}
	if len(st.Metrics) > 0 {
		fmt.Fprintf(tw, "Metrics:\t%s\n", fmtMetrics(st.Metrics))
	}
	if m := st.Model; m != nil {
		fmt.Fprintf(tw, "Model:\t%s version %s\n", m.Name, m.Version)
		if m.ServingEndpoint != "" {
			fmt.Fprintf(tw, "Endpoint:\t%s\n", m.ServingEndpoint)
		}
	}
	fmt.Fprintf(tw, "Conditions:\n")
	for _, c := range st.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, fmtTime(&c.LastTransitionTime), c.Message)
	}
}

func (p printer) job(j *training.Job) error {
	if p.json {
		return cli.WriteJSON(p.w, j)
	}
	tw := cli.NewTable(p.w)
	fmt.Fprintf(tw, "ID:\t%s\n", j.ID)
	fmt.Fprintf(tw, "Backend:\t%s\n", j.Backend)
	if j.Study != "" {
		fmt.Fprintf(tw, "Study:\t%s (trial %d)\n", j.Study, j.Trial)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", fmtTime(&j.CreatedAt))
	if j.Outputs.ArtifactURI != "" {
		fmt.Fprintf(tw, "Artifact:\t%s\n", j.Outputs.ArtifactURI)
	}
	p.status(tw, &j.Status)
	return tw.Flush()
}

func (p printer) jobs(jobs []training.Job) error {
	if p.json {
		return cli.WriteJSONList(p.w, jobs)
	}
	tw := cli.NewTable(p.w)
	fmt.Fprintln(tw, "ID\tPHASE\tREASON\tBACKEND\tCREATED\tMODEL")
	for _, j := range jobs {
		model := "-"
		if m := j.Status.Model; m != nil {
			model = m.Name + "/" + m.Version
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Status.Phase, lastReason(&j.Status), j.Backend, fmtTime(&j.CreatedAt), model)
	}
	return tw.Flush()
}

func (p printer) study(s *training.Study) error {
	if p.json {
		return cli.WriteJSON(p.w, s)
	}
	tw := cli.NewTable(p.w)
	fmt.Fprintf(tw, "ID:\t%s\n", s.ID)
	fmt.Fprintf(tw, "Objective:\t%s %s\n", s.Spec.Objective.Goal, s.Spec.Objective.Metric)
	fmt.Fprintf(tw, "Search:\t%s, %d trial(s) at most, %d at a time\n", s.Spec.Search, s.Spec.MaxTrials, s.Spec.Parallel)
	if s.Status.StopReason != "" {
		fmt.Fprintf(tw, "Stopped:\t%s\n", s.Status.StopReason)
	}
	if s.Status.BestValue != nil {
		fmt.Fprintf(tw, "Best:\ttrial %d, %s=%g\n", s.Status.Best, s.Spec.Objective.Metric, *s.Status.BestValue)
	}
	p.status(tw, &s.Status.JobStatus)
	fmt.Fprintf(tw, "Trials:\n")
	for _, t := range s.Status.Trials {
		v := "-"
		if t.Value != nil {
			v = fmt.Sprintf("%g", *t.Value)
		}
		params := cli.JoinMap(t.Params, " ", func(s string) string { return s })
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", t.Number, t.JobID, t.Phase, v, params, t.Message)
	}
	return tw.Flush()
}

func (p printer) studies(list []training.Study) error {
	if p.json {
		return cli.WriteJSONList(p.w, list)
	}
	tw := cli.NewTable(p.w)
	fmt.Fprintln(tw, "ID\tPHASE\tTRIALS\tBEST\tSTOPPED\tCREATED")
	for _, s := range list {
		best := "-"
		if s.Status.BestValue != nil {
			best = fmt.Sprintf("#%d %s=%g", s.Status.Best, s.Spec.Objective.Metric, *s.Status.BestValue)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Status.Phase, len(s.Status.Trials), best,
			cli.Dash(s.Status.StopReason), fmtTime(&s.CreatedAt))
	}
	return tw.Flush()
}

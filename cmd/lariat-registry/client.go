package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/registry"
)

// clientFlags are the flags every client verb takes.
type clientFlags struct {
	server  string
	output  string
	timeout time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "registry", "http://127.0.0.1:8070", "registry server URL")
	cli.Alias(fs, "server", "registry")
	fs.StringVar(&c.output, "output", "table", "output format: table or json")
	cli.Alias(fs, "o", "output")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "request timeout")
}

// kvFlag collects repeated key=value flags.
type kvFlag []registry.Tag

func (k *kvFlag) String() string { return fmt.Sprint(*k) }

func (k *kvFlag) Set(s string) error {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	*k = append(*k, registry.Tag{Key: key, Value: value})
	return nil
}

// listFlag collects repeated string flags.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}

func clientCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return cli.Usagef("%s needs a subcommand", args[0])
	}
	verb := args[0] + " " + args[1]
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)

	var (
		description, source, runID, endpoint, job, filter string
		tags, params, metrics                             kvFlag
		featureViews                                      listFlag
		maxResults                                        int64
	)
	switch verb {
	case "models create":
		fs.StringVar(&description, "description", "", "model description")
		fs.Var(&tags, "tag", "tag key=value (repeatable)")
	case "models list":
		fs.StringVar(&filter, "filter", "", "search filter, e.g. \"name LIKE 'eta%'\"")
		fs.Int64Var(&maxResults, "max-results", 0, "stop after this many models (0: all)")
	case "versions create":
		fs.StringVar(&source, "source", "", "artifact URI of the model (required)")
		fs.StringVar(&runID, "run-id", "", "run id")
		fs.StringVar(&description, "description", "", "version description")
		fs.StringVar(&endpoint, "serving-endpoint", "", "URL the gateway calls for this version")
		fs.StringVar(&job, "training-job", "", "id of the training job that produced it")
		fs.Var(&tags, "tag", "tag key=value (repeatable)")
		fs.Var(&params, "param", "training parameter key=value (repeatable)")
		fs.Var(&metrics, "metric", "metric key=number (repeatable)")
		fs.Var(&featureViews, "feature-view", "feature view the model reads (repeatable)")
	case "versions list":
		fs.StringVar(&filter, "filter", "", "extra search filter, ANDed with the model name")
	case "models show", "alias set", "alias get":
	default:
		return cli.Usagef("unknown command %q", verb)
	}
	pos, err := cli.ParseInterspersed(fs, args[2:])
	if err != nil {
		return err
	}
	if cf.output != "table" && cf.output != "json" {
		return cli.Usagef("-output must be table or json, got %q", cf.output)
	}
	wantArgs := map[string]int{
		"models create": 1, "models list": 0, "models show": 1,
		"versions create": 1, "versions list": 1, "alias set": 3, "alias get": 2,
	}[verb]
	if len(pos) != wantArgs {
		return cli.Usagef("%s takes %d argument(s), got %d: %q", verb, wantArgs, len(pos), pos)
	}

	client := registry.NewClient(cf.server, &http.Client{Timeout: cf.timeout})
	ctx, cancel := context.WithTimeout(context.Background(), cf.timeout)
	defer cancel()
	out := printer{w: stdout, json: cf.output == "json"}

	switch verb {
	case "models create":
		m, err := client.CreateModel(ctx, registry.CreateModelRequest{Name: pos[0], Description: description, Tags: tags})
		if err != nil {
			return err
		}
		return out.model(m)
	case "models show":
		m, err := client.GetModel(ctx, pos[0])
		if err != nil {
			return err
		}
		return out.model(m)
	case "models list":
		var all []registry.RegisteredModel
		req := registry.SearchRequest{Filter: filter, MaxResults: 1000}
		for {
			ms, next, err := client.SearchModels(ctx, req)
			if err != nil {
				return err
			}
			all = append(all, ms...)
			if next == "" || next == req.PageToken || (maxResults > 0 && int64(len(all)) >= maxResults) {
				break
			}
			req.PageToken = next
		}
		if maxResults > 0 && int64(len(all)) > maxResults {
			all = all[:maxResults]
		}
		return out.models(all)
	case "versions create":
		if source == "" {
			return cli.Usagef("versions create needs -source")
		}
		req := registry.CreateVersionRequest{
			Name: pos[0], Source: source, RunID: runID, Description: description, Tags: tags,
			ServingEndpoint: endpoint, TrainingJob: job, FeatureViews: featureViews,
		}
		if len(params) > 0 {
			req.Params = map[string]string{}
			for _, p := range params {
				req.Params[p.Key] = p.Value
			}
		}
		if len(metrics) > 0 {
			req.Metrics = map[string]float64{}
			for _, m := range metrics {
				f, err := strconv.ParseFloat(m.Value, 64)
				if err != nil {
					return cli.Usagef("-metric %s=%s: value is not a number", m.Key, m.Value)
				}
				req.Metrics[m.Key] = f
			}
		}
		v, err := client.CreateVersion(ctx, req)
		if err != nil {
			return err
		}
		return out.version(v)
	case "versions list":
		f := "name = '" + strings.ReplaceAll(pos[0], "'", "''") + "'"
		if filter != "" {
			f += " AND " + filter
		}
		if _, err := client.GetModel(ctx, pos[0]); err != nil {
			return err
		}
		var all []registry.ModelVersion
		req := registry.SearchRequest{Filter: f, OrderBy: []string{"version_number DESC"}}
		for {
			vs, next, err := client.SearchVersions(ctx, req)
			if err != nil {
				return err
			}
			all = append(all, vs...)
			if next == "" || next == req.PageToken {
				break
			}
			req.PageToken = next
		}
		return out.versions(all)
	case "alias set":
		if err := client.SetAlias(ctx, pos[0], pos[1], pos[2]); err != nil {
			return err
		}
		v, err := client.VersionByAlias(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		if out.json {
			return out.version(v)
		}
		_, err = fmt.Fprintf(out.w, "%s@%s -> version %s\n", pos[0], pos[1], v.Version)
		return err
	case "alias get":
		v, err := client.VersionByAlias(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		return out.version(v)
	}
	return nil
}

// printer writes results as indented JSON or readable tables.
type printer struct {
	w    io.Writer
	json bool
}

func fmtTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func fmtTags(tags []registry.Tag) string {
	parts := make([]string, 0, len(tags))
	for _, t := range tags {
		parts = append(parts, t.Key+"="+t.Value)
	}
	return cli.Dash(strings.Join(parts, ","))
}

func (p printer) model(m *registry.RegisteredModel) error {
	if p.json {
		return cli.WriteJSON(p.w, m)
	}
	tw := cli.NewTable(p.w)
	aliases := make([]string, 0, len(m.Aliases))
	for _, a := range m.Aliases {
		aliases = append(aliases, a.Alias+"="+a.Version)
	}
	fmt.Fprintf(tw, "name:\t%s\n", m.Name)
	fmt.Fprintf(tw, "description:\t%s\n", cli.Dash(m.Description))
	fmt.Fprintf(tw, "created:\t%s\n", fmtTime(m.CreationTimestamp))
	fmt.Fprintf(tw, "updated:\t%s\n", fmtTime(m.LastUpdatedTimestamp))
	fmt.Fprintf(tw, "tags:\t%s\n", fmtTags(m.Tags))
	fmt.Fprintf(tw, "aliases:\t%s\n", cli.Dash(strings.Join(aliases, ",")))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(m.LatestVersions) == 0 {
		return nil
	}
	fmt.Fprintln(p.w, "latest versions:")
	return p.versionTable(m.LatestVersions)
}

func (p printer) models(ms []registry.RegisteredModel) error {
	if p.json {
		return cli.WriteJSONList(p.w, ms)
	}
	tw := cli.NewTable(p.w)
	fmt.Fprintln(tw, "NAME\tLATEST\tALIASES\tUPDATED\tDESCRIPTION")
	for _, m := range ms {
		latest := "-"
		var best int64
		for _, v := range m.LatestVersions {
			if n, _ := strconv.ParseInt(v.Version, 10, 64); n > best {
				best, latest = n, v.Version
			}
		}
		aliases := make([]string, 0, len(m.Aliases))
		for _, a := range m.Aliases {
			aliases = append(aliases, a.Alias+"="+a.Version)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, latest, cli.Dash(strings.Join(aliases, ",")),
			fmtTime(m.LastUpdatedTimestamp), cli.Dash(m.Description))
	}
	return tw.Flush()
}

func (p printer) version(v *registry.ModelVersion) error {
	if p.json {
		return cli.WriteJSON(p.w, v)
	}
	tw := cli.NewTable(p.w)
	fmt.Fprintf(tw, "name:\t%s\n", v.Name)
	fmt.Fprintf(tw, "version:\t%s\n", v.Version)
	fmt.Fprintf(tw, "stage:\t%s\n", v.CurrentStage)
	fmt.Fprintf(tw, "aliases:\t%s\n", cli.Dash(strings.Join(v.Aliases, ",")))
	fmt.Fprintf(tw, "source:\t%s\n", v.Source)
	fmt.Fprintf(tw, "serving endpoint:\t%s\n", cli.Dash(v.ServingEndpoint))
	fmt.Fprintf(tw, "training job:\t%s\n", cli.Dash(v.TrainingJob))
	fmt.Fprintf(tw, "run id:\t%s\n", cli.Dash(v.RunID))
	fmt.Fprintf(tw, "status:\t%s\n", v.Status)
	fmt.Fprintf(tw, "created:\t%s\n", fmtTime(v.CreationTimestamp))
	fmt.Fprintf(tw, "description:\t%s\n", cli.Dash(v.Description))
	fmt.Fprintf(tw, "tags:\t%s\n", fmtTags(v.Tags))
	fmt.Fprintf(tw, "params:\t%s\n", fmtMap(v.Params, func(s string) string { return s }))
	fmt.Fprintf(tw, "metrics:\t%s\n", fmtMap(v.Metrics, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }))
	fmt.Fprintf(tw, "feature views:\t%s\n", cli.Dash(strings.Join(v.FeatureViews, ",")))
	return tw.Flush()
}

func fmtMap[V any](m map[string]V, format func(V) string) string {
	return cli.Dash(cli.JoinMap(m, ",", format))
}

func (p printer) versions(vs []registry.ModelVersion) error {
	if p.json {
		return cli.WriteJSONList(p.w, vs)
	}
	return p.versionTable(vs)
}

func (p printer) versionTable(vs []registry.ModelVersion) error {
	tw := cli.NewTable(p.w)
	fmt.Fprintln(tw, "VERSION\tSTAGE\tALIASES\tSERVING ENDPOINT\tTRAINING JOB\tCREATED\tSOURCE")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Version, v.CurrentStage, cli.Dash(strings.Join(v.Aliases, ",")),
			cli.Dash(v.ServingEndpoint), cli.Dash(v.TrainingJob), fmtTime(v.CreationTimestamp), v.Source)
	}
	return tw.Flush()
}

package training

import (
	"context"
	"fmt"
	"io"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// KubeAPI is the part of the Kubernetes API the kubernetes and kubeflow
// backends call: batch/v1 Jobs, and core/v1 Pods for their status and logs.
// NewKubeAPI makes one from a rest.Config. Errors the API server answers are
// *apierrors.StatusError (apierrors.IsNotFound and the like work on them).
type KubeAPI interface {
	// CreateJob creates job in its namespace.
	CreateJob(ctx context.Context, job *batchv1.Job) error
	// GetJob reads a Job.
	GetJob(ctx context.Context, namespace, name string) (*batchv1.Job, error)
	// DeleteJob deletes a Job and, in the background, its pods.
	DeleteJob(ctx context.Context, namespace, name string) error
	// ListPods lists the pods matching a label selector.
	ListPods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error)
	// PodLogs streams the logs of a pod's container; with follow, until it ends.
	PodLogs(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error)
}

// kubeREST is KubeAPI on client-go's REST client with a scheme of only the
// batch/v1 and core/v1 types: the typed clientset (and even its batch/v1 and
// core/v1 clients alone) registers every API group of Kubernetes, about half
// of lariat-train's size.
type kubeREST struct {
	batch, core *rest.RESTClient
}

var _ KubeAPI = (*kubeREST)(nil)

// NewKubeAPI returns a KubeAPI that talks to the API server cfg describes.
func NewKubeAPI(cfg *rest.Config) (KubeAPI, error) {
	scheme := runtime.NewScheme()
	if err := batchv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("BUG: cannot register batch/v1: %w", err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("BUG: cannot register core/v1: %w", err)
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot make a Kubernetes client: %w", err)
	}
	client := func(apiPath string, gv schema.GroupVersion) (*rest.RESTClient, error) {
		c := rest.CopyConfig(cfg)
		c.APIPath = apiPath
		c.GroupVersion = &gv
		c.NegotiatedSerializer = codecs
		if c.ContentType == "" {
			c.ContentType = runtime.ContentTypeJSON
		}
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientForConfigAndClient(c, hc)
		if err != nil {
			return nil, fmt.Errorf("cannot make a Kubernetes client: %w", err)
		}
		return rc, nil
	}
	k := &kubeREST{}
	if k.batch, err = client("/apis", batchv1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	if k.core, err = client("/api", corev1.SchemeGroupVersion); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *kubeREST) CreateJob(ctx context.Context, job *batchv1.Job) error {
	return k.batch.Post().Namespace(job.Namespace).Resource("jobs").Body(job).Do(ctx).Error()
}

func (k *kubeREST) GetJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	var job batchv1.Job
	if err := k.batch.Get().Namespace(namespace).Resource("jobs").Name(name).Do(ctx).Into(&job); err != nil {
		return nil, err
	}
	return &job, nil
}

func (k *kubeREST) DeleteJob(ctx context.Context, namespace, name string) error {
	bg := metav1.DeletePropagationBackground
	return k.batch.Delete().Namespace(namespace).Resource("jobs").Name(name).
		Body(&metav1.DeleteOptions{PropagationPolicy: &bg}).Do(ctx).Error()
}

func (k *kubeREST) ListPods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error) {
	var list corev1.PodList
	err := k.core.Get().Namespace(namespace).Resource("pods").Param("labelSelector", selector).Do(ctx).Into(&list)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (k *kubeREST) PodLogs(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error) {
	req := k.core.Get().Namespace(namespace).Resource("pods").Name(pod).SubResource("log").Param("container", container)
	if follow {
		req = req.Param("follow", "true")
	}
	return req.Stream(ctx)
}

package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/gantryci/gantry/client"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// The examples run against the Gantry that TestMain starts and names in
// GANTRY_ADDR, with its token in GANTRY_TOKEN.

const hello = `name: hello
tasks:
  - name: greet
    exec: {shell: "echo hello from gantry"}
`

// Submit a pipeline and follow it to its end, printing its output.
func Example() {
	c, err := client.New([]string{os.Getenv("GANTRY_ADDR")}, client.WithToken(os.Getenv("GANTRY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	resp, err := c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: hello})
	if err != nil {
		log.Fatal(err)
	}
	job, err := c.FollowJob(ctx, resp.Job.Id, nil, func(ch *gv1.LogChunk) error {
		if ch.Stream == gv1.LogStream_LOG_STREAM_STDOUT {
			fmt.Printf("[%s] %s", ch.Ref.Task, ch.Data)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.State)
	// Output:
	// [greet] hello from gantry
	// JOB_STATE_SUCCEEDED
}

// Several coordinators of one cluster: calls go to the first that answers.
func ExampleNew() {
	c, err := client.New([]string{"127.0.0.1:1", os.Getenv("GANTRY_ADDR")}, client.WithToken(os.Getenv("GANTRY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	st, err := c.Cluster(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", st.LeaderId)
	// Output: leader: dev
}

// Submitting the same request again returns the job the first submit
// created: Submit gave the request an idempotency key.
func ExampleClient_Submit() {
	c, err := client.New([]string{os.Getenv("GANTRY_ADDR")}, client.WithToken(os.Getenv("GANTRY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	req := &gv1.SubmitJobRequest{SpecYaml: hello}
	first, err := c.Submit(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	again, err := c.Submit(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same job:", again.Job.Id == first.Job.Id, "existing:", again.Existing)
	// Output: same job: true existing: true
}

// Wait for a job to end, then replay its log.
func ExampleClient_Logs() {
	c, err := client.New([]string{os.Getenv("GANTRY_ADDR")}, client.WithToken(os.Getenv("GANTRY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	resp, err := c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: hello})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Watch(ctx, resp.Job.Id, nil); err != nil {
		log.Fatal(err)
	}
	err = c.Logs(ctx, resp.Job.Id, "greet", false, func(ch *gv1.LogChunk) error {
		if ch.Stream == gv1.LogStream_LOG_STREAM_STDOUT {
			fmt.Printf("%s", ch.Data)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("end of log")
	// Output:
	// hello from gantry
	// end of log
}

// Watch a job's tasks until the job ends.
func ExampleClient_Watch() {
	c, err := client.New([]string{os.Getenv("GANTRY_ADDR")}, client.WithToken(os.Getenv("GANTRY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	resp, err := c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: hello})
	if err != nil {
		log.Fatal(err)
	}
	final, err := c.Watch(ctx, resp.Job.Id, func(j *gv1.Job) error {
		// Called now and after every change: print progress here.
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range final.Tasks {
		fmt.Println(t.Name, t.State, "on", t.Agent)
	}
	// Output: greet TASK_STATE_SUCCEEDED on local
}

func ExampleClient_Agents() {
	c, err := client.New([]string{os.Getenv("GANTRY_ADDR")}, client.WithToken(os.Getenv("GANTRY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	agents, err := c.Agents(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range agents {
		fmt.Println(a.Info.Name, a.State)
	}
	// Output: local AGENT_STATE_ACTIVE
}

// Save the cluster's state; RestoreSnapshot loads it into a new cluster.
func ExampleClient_SaveSnapshot() {
	c, err := client.New([]string{os.Getenv("GANTRY_ADDR")}, client.WithToken(os.Getenv("GANTRY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	f, err := os.CreateTemp("", "gantry-*.snap")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := c.SaveSnapshot(context.Background(), f)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("saved:", n > 0)
	// Output: saved: true
}

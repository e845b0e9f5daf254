// Package client is the Go client of Gantry: typed calls of the
// coordinators' gRPC API (gantry.v1.GantryService) for jobs, logs, agents,
// the cluster, GitOps applications, secrets and snapshots. The gantry
// command and the web console use it too.
//
//	c, err := client.New([]string{"10.0.0.1:7420,10.0.0.2:7420"}, client.WithToken(token))
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	resp, err := c.Submit(ctx, &gv1.SubmitJobRequest{SpecYaml: pipeline})
//	if err != nil {
//		return err
//	}
//	job, err := c.FollowJob(ctx, resp.Job.Id, nil, func(ch *gv1.LogChunk) error {
//		_, err := os.Stdout.Write(ch.Data)
//		return err
//	})
//
// What the client does for every call:
//
//   - Honest reads: it remembers the highest state index an answer came
//     from and asks every later call not to be answered from an older
//     state, whichever coordinator answers. A client never sees a job it
//     has seen go back in time, nor miss a job it submitted.
//   - Failover: given several coordinators, it sends calls to one and moves
//     on to the next when that one is unreachable or refuses as
//     Unavailable (no leader, catching up after a restart).
//   - Retries: reads, and writes that are safe to repeat, are tried again
//     after Unavailable with exponential back-off for up to 30 s
//     (WithRetryTimeout), never past the call's context's deadline; the
//     last refusal is returned, not the deadline. Submit sets an
//     idempotency key when the request has none, so a retried submit
//     cannot create a second job.
//
// Errors of the API are gRPC status errors, returned as they are: use
// status.Code to tell codes.NotFound from codes.InvalidArgument.
package client

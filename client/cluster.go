package client

import (
	"context"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Agents lists the agents with their labels, slots, state and running
// tasks.
func (c *Client) Agents(ctx context.Context) ([]*gv1.AgentStatus, error) {
	resp, err := c.api.ListAgents(ctx, &gv1.ListAgentsRequest{})
	return resp.GetAgents(), err
}

// Drain tells an agent to take no new work, finish what it runs and exit.
func (c *Client) Drain(ctx context.Context, agent string) error {
	_, err := c.api.DrainAgent(ctx, &gv1.DrainAgentRequest{Name: agent})
	return err
}

// Queue lists the waiting tasks, each with the reason it waits, and the
// schedule-to-start latency of each queue.
func (c *Client) Queue(ctx context.Context) (*gv1.ListQueueResponse, error) {
	return c.api.ListQueue(ctx, &gv1.ListQueueRequest{})
}

// Cluster describes the coordinators: the leader, the term and each node's
// Raft state and indexes.
func (c *Client) Cluster(ctx context.Context) (*gv1.ClusterStatusResponse, error) {
	return c.api.ClusterStatus(ctx, &gv1.ClusterStatusRequest{})
}

// AddNode adds a running coordinator to the cluster as a voter.
func (c *Client) AddNode(ctx context.Context, id, raftAddr string) error {
	_, err := c.api.AddNode(ctx, &gv1.AddNodeRequest{Id: id, RaftAddr: raftAddr})
	return err
}

// RemoveNode removes a coordinator from the cluster.
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	_, err := c.api.RemoveNode(ctx, &gv1.RemoveNodeRequest{Id: id})
	return err
}

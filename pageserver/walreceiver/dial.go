package walreceiver

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Dial makes a gRPC client connection to each safekeeper's gRPC address,
// for Config.SafekeeperClients (pb.NewSafekeeperClient of each). Nothing is
// sent yet: connections are made on first use and remade after failures
// with the receiver's backoff (backoffMin ×1.5 up to backoffMax; zero: the
// defaults), not gRPC's default of up to two minutes, so a safekeeper that
// comes back is seen again within backoffMax. The caller closes them.
func Dial(addrs []string, backoffMin, backoffMax time.Duration) ([]*grpc.ClientConn, error) {
	backoffMin, backoffMax = backoffBounds(backoffMin, backoffMax)
	params := grpc.ConnectParams{
		Backoff:           grpcbackoff.Config{BaseDelay: backoffMin, Multiplier: 1.5, Jitter: 0.2, MaxDelay: backoffMax},
		MinConnectTimeout: DefaultWALConnectTimeout,
	}
	conns := make([]*grpc.ClientConn, 0, len(addrs))
	for _, a := range addrs {
		c, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithConnectParams(params))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("safekeeper gRPC address %q: %w", a, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

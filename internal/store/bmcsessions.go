package store

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// bucketBMCSessions holds the Redfish sessions the agent has open on BMCs,
// by base + URI. Not part of the Store interface: only the agent's BMC
// manager uses it, to delete sessions a killed agent left open.
var bucketBMCSessions = []byte("bmc_sessions")

type bmcSessionRecord struct {
	Session     model.BMCSession `json:"session"`
	SealedToken []byte           `json:"sealed_token"`
}

func bmcSessionKey(base, uri string) string { return base + uri }

func adBMCSessionToken(key string) string { return "bmc_session/" + key + "/token" }

// PutBMCSession records a session the agent opened.
func (s *Bolt) PutBMCSession(ctx context.Context, sess model.BMCSession) error {
	key := bmcSessionKey(sess.Base, sess.URI)
	blob, err := s.sealer.seal(sess.Token, adBMCSessionToken(key))
	if err != nil {
		return fmt.Errorf("BMC session %s: sealing token: %w", key, err)
	}
	sess.Token = ""
	data, err := json.Marshal(bmcSessionRecord{Session: sess, SealedToken: blob})
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		return nil, tx.Bucket(bucketBMCSessions).Put([]byte(key), data)
	})
}

// DeleteBMCSession forgets a session the agent logged out of (or found
// gone). Forgetting an unknown session is not an error.
func (s *Bolt) DeleteBMCSession(ctx context.Context, base, uri string) error {
	return s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		return nil, tx.Bucket(bucketBMCSessions).Delete([]byte(bmcSessionKey(base, uri)))
	})
}

// ListBMCSessions returns every recorded session with its token opened.
func (s *Bolt) ListBMCSessions(ctx context.Context) ([]model.BMCSession, error) {
	var out []model.BMCSession
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBMCSessions).ForEach(func(k, data []byte) error {
			var rec bmcSessionRecord
			if err := json.Unmarshal(data, &rec); err != nil {
				return fmt.Errorf("BMC session %s: stored record is corrupt: %v", k, err)
			}
			tok, err := s.sealer.open(rec.SealedToken, adBMCSessionToken(string(k)))
			if err != nil {
				return fmt.Errorf("BMC session %s: opening token: %w", k, err)
			}
			rec.Session.Token = tok
			out = append(out, rec.Session)
			return nil
		})
	})
	return out, err
}

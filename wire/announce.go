package wire

import "github.com/sovereign-fl/sovereign/aggregation/secagg"

// Announce opens a round for one worker: which model to start from, how to
// train, and the SecAgg+ configuration shared by the round's cohort. It is
// the one announcement type: the coordinator commits it through Raft
// (coordinator.RoundStarted; its JSON is in the log, so the field names
// are part of the replicated format), sends it as a RoundAnnounce
// (AnnounceToPB) and serves its digest (AnnounceDigest); the worker decodes
// it (AnnounceFromPB), checks it against its policy and stores it.
type Announce struct {
	// Round is the round number (the federation's, across studies).
	Round uint64
	// ModelHash is the SHA-256 of the global model's bytes (little-endian
	// float32); ModelVersion the round that produced it (0 = initial).
	ModelHash    [32]byte
	ModelVersion uint64
	// ModelSpec is the architecture, e.g. "2nn" or "mlp:32"; NumParams the
	// length of its parameter vector.
	ModelSpec string
	NumParams int
	// Train are the local-training settings, DP the differential-privacy
	// settings.
	Train TrainParams
	DP    DPParams
	// SecAgg is the round's complete SecAgg+ configuration (defaults
	// applied); SecAgg.Clients[i] is the index of Sampled[i].
	SecAgg secagg.Config
	// Sampled are the sampled workers' peer IDs (string form), sorted.
	Sampled []string
	// Epsilon is the cumulative ε the study will have spent when the
	// round commits, so a worker can refuse a round beyond its budget.
	Epsilon float64
	// Purpose is "" for a model round and PurposeStatistics for the
	// federation-statistics round of a data schema.
	Purpose string
	// SchemaHash is the SHA-256 of the data schema file (zero: none).
	SchemaHash [32]byte
	// Stats is the federation's statistics (JSON of data.Stats) on model
	// rounds of a study with a schema, once they are committed.
	Stats []byte
	// StatsMaxRows is, on the statistics round, the public bound on a
	// site's rows (data.SumScales); 0 on model rounds.
	StatsMaxRows int
	// Study names the study the round belongs to ("" = the default).
	Study string
}

// MaxStudyName bounds RoundAnnounce.study and StudyPlan.study.
const MaxStudyName = 63

// DefaultStudyLabel is how the federation's default study (Study "") is
// named to people: in logs, status, metrics and on the command line.
const DefaultStudyLabel = "default"

// StudyLabel names study for people (DefaultStudyLabel for "").
func StudyLabel(study string) string {
	if study == "" {
		return DefaultStudyLabel
	}
	return study
}

// TrainParams are the local-training settings a round asks workers to use.
type TrainParams struct {
	Epochs int     `json:"epochs"`
	Batch  int     `json:"batch"`
	LR     float64 `json:"lr"`
	ProxMu float64 `json:"prox_mu"` // FedProx μ (Li et al. 2020); 0 = FedAvg
}

// DPParams are the differential-privacy settings of a round. Noise 0 means
// off. With secure aggregation each worker clips its update to Clip and
// adds N(0, σ²C²/MinClients) (distributed DP); the fewest clients an
// unmasked sum may contain is the SecAgg+ threshold.
type DPParams struct {
	Clip       float64 `json:"clip"`
	Noise      float64 `json:"noise"`
	MinClients int     `json:"min_clients"`
}

// NodeIndex returns id's SecAgg+ node index in a (1-based), or 0 if id was
// not sampled.
func (a *Announce) NodeIndex(id string) uint32 {
	for i, s := range a.Sampled {
		if s == id {
			return uint32(i + 1)
		}
	}
	return 0
}

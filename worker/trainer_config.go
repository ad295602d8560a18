package worker

import (
	"strconv"
	"strings"
)

// validateTrainer checks a configuration with a trainer command: the
// trainer holds the data, so dataset, schema and stats must be absent.
func (c *Config) validateTrainer() error {
	for i, a := range c.Trainer {
		if i == 0 && strings.TrimSpace(a) == "" {
			return c.fieldError("trainer[0]", "empty program (want e.g. [\"python3\", \"train.py\", \"--data\", \"/data/cohort\"])")
		}
		if strings.ContainsRune(a, 0) {
			return c.fieldError("trainer["+strconv.Itoa(i)+"]", "contains a NUL byte")
		}
	}
	for _, f := range []struct{ key, v string }{{"dataset", c.Dataset}, {"schema", c.Schema}, {"stats", c.Stats}} {
		if f.v != "" {
			return c.fieldError(f.key, "set together with trainer: the trainer loads the data itself (pass its location on the trainer's command line)")
		}
	}
	if c.TrainerTimeout < 0 {
		return c.fieldError("trainer_timeout", "%v is negative", c.TrainerTimeout)
	}
	return c.validateRest()
}

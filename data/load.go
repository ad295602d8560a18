package data

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The embedded data sets; see README.md for their sources and licences.
var (
	//go:embed digits.csv.gz
	digitsCSV []byte
	//go:embed mnist/train-images-idx3-ubyte.gz
	mnistTrainImages []byte
	//go:embed mnist/train-labels-idx1-ubyte.gz
	mnistTrainLabels []byte
	//go:embed mnist/t10k-images-idx3-ubyte.gz
	mnistTestImages []byte
	//go:embed mnist/t10k-labels-idx1-ubyte.gz
	mnistTestLabels []byte
)

// SplitSeed is the fixed seed of the shuffle that splits the digits set and
// CSV files into train and test, so every run and every institution sees the
// same split.
const SplitSeed = 20170217

// DefaultTestFrac is the fraction of rows Load holds out for testing when a
// data set has no split of its own.
const DefaultTestFrac = 0.2

// SpecForms describes the values Load accepts; it is quoted in its errors
// and suits a command-line flag's help text.
const SpecForms = `"digits" (embedded, default), "mnist" (embedded) ` +
	`("digits?shard=I/N" and "mnist?shard=I/N": the I-th of N disjoint shards of both splits), "idx:DIR" ` +
	`(DIR holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], ` +
	`t10k-labels-idx1-ubyte[.gz]; "train-images.idx3-ubyte" naming also accepted) or ` +
	`"csv:FILE[?label=NAME_OR_INDEX&header=auto|true|false&standardize=true|false&classes=N&test=FRAC&seed=N]"`

// Load resolves a --dataset value into a train and a test set.
//
//   - "digits": the embedded scikit-learn digits (8x8 images, 10 classes),
//     see Digits.
//   - "mnist": the embedded MNIST (28x28 images, 60,000 train, 10,000 test),
//     see MNIST.
//   - "idx:DIR": IDX files in DIR, train-* for training and t10k-* (or
//     test-*) for testing; see LoadIDX.
//   - "csv:FILE": a CSV table read by LoadCSV, shuffled with SplitSeed and
//     split with the last 20% for testing. Options follow a '?' (the last one
//     in the value) as URL query parameters: label (name or 0-based index),
//     header (auto, true or false), standardize (true or false: z-scores with
//     train statistics, see Standardize), classes (N, 0 = infer), test (the
//     test fraction in [0, 1)) and seed (the split seed).
//
// "digits" and "mnist" take one option, shard=I/N (1 ≤ I ≤ N): the I-th of N
// contiguous, disjoint shards of the train split and of the test split
// (digits is shuffled with SplitSeed, so its shards are random ones), so
// that each demo institution holds its own rows (see Shard).
//
// The empty string means "digits". Both returned sets have the same Classes. Errors quote spec and the
// allowed forms.
func Load(spec string) (train, test *Dataset, err error) {
	if base, query, ok := strings.Cut(spec, "?"); ok && (strings.EqualFold(base, "digits") || strings.EqualFold(base, "mnist")) {
		i, n, err := parseShard(spec, query)
		if err != nil {
			return nil, nil, err
		}
		if train, test, err = Load(base); err != nil {
			return nil, nil, err
		}
		return Shard(train, i, n), Shard(test, i, n), nil
	}
	kind, rest, _ := strings.Cut(spec, ":")
	switch strings.ToLower(kind) {
	case "digits", "":
		if rest != "" || (kind == "" && spec != "") {
			break
		}
		return Digits()
	case "mnist":
		if rest != "" {
			break
		}
		return MNIST()
	case "idx":
		if rest == "" {
			return nil, nil, fmt.Errorf("data: dataset %q: idx: needs a directory; allowed forms: %s", spec, SpecForms)
		}
		return loadIDXDir(rest)
	case "csv":
		if rest == "" {
			return nil, nil, fmt.Errorf("data: dataset %q: csv: needs a file; allowed forms: %s", spec, SpecForms)
		}
		return loadCSVSpec(spec, rest)
	}
	return nil, nil, fmt.Errorf("data: unknown dataset %q; allowed forms: %s", spec, SpecForms)
}

// parseShard reads the "shard=I/N" option of an embedded data set.
func parseShard(spec, query string) (i, n int, err error) {
	bad := fmt.Errorf("data: dataset %q: want shard=I/N with 1 ≤ I ≤ N (the only option of digits and mnist)", spec)
	vals, err := url.ParseQuery(query)
	if err != nil || len(vals) != 1 || len(vals["shard"]) != 1 {
		return 0, 0, bad
	}
	a, b, ok := strings.Cut(vals["shard"][0], "/")
	if !ok {
		return 0, 0, bad
	}
	if i, err = strconv.Atoi(a); err != nil {
		return 0, 0, bad
	}
	if n, err = strconv.Atoi(b); err != nil || i < 1 || i > n {
		return 0, 0, bad
	}
	return i, n, nil
}

// Shard returns the i-th (1-based) of n contiguous shards of d: rows
// [(i−1)·N/n, i·N/n). The shards of one data set are disjoint and cover it.
// It keeps d's shape and classes.
func Shard(d *Dataset, i, n int) *Dataset {
	lo, hi := (i-1)*d.N/n, i*d.N/n
	idx := make([]int, 0, hi-lo)
	for r := lo; r < hi; r++ {
		idx = append(idx, r)
	}
	s, err := d.Subset(fmt.Sprintf("%s shard %d/%d", d.Name, i, n), idx)
	if err != nil {
		panic(err) // idx lies in [0, d.N) by construction
	}
	return s
}

// Digits returns the embedded scikit-learn digits set (1,797 8x8 grey-level
// images of handwritten digits, 10 classes; Alpaydin & Kaynak 1998, UCI
// "Optical Recognition of Handwritten Digits"), features scaled from 0..16 to
// [0, 1], shape C,H,W = 1,8,8, shuffled with SplitSeed and split with the
// last 20% (359 rows) for testing.
func Digits() (train, test *Dataset, err error) {
	d, err := ReadCSV(bytes.NewReader(digitsCSV), "digits", CSVOptions{Header: 0, Classes: 10})
	if err != nil {
		return nil, nil, err
	}
	if d.Dim != 64 {
		return nil, nil, fmt.Errorf("data: embedded digits: %d features, want 64", d.Dim)
	}
	for i, v := range d.X {
		d.X[i] = v / 16
	}
	d.C, d.H, d.W = 1, 8, 8
	return Split(d, DefaultTestFrac, SplitSeed)
}

// MNIST returns the embedded MNIST set (LeCun, Bottou, Bengio & Haffner
// 1998): 60,000 training and 10,000 test images of 28x28 pixels scaled to
// [0, 1], shape C,H,W = 1,28,28, 10 classes, in the files' order.
// Decompressing and decoding takes about a second.
func MNIST() (train, test *Dataset, err error) {
	if train, err = idxFromBytes("mnist:train", "mnist/train-images-idx3-ubyte.gz", mnistTrainImages,
		"mnist/train-labels-idx1-ubyte.gz", mnistTrainLabels); err != nil {
		return nil, nil, err
	}
	if test, err = idxFromBytes("mnist:test", "mnist/t10k-images-idx3-ubyte.gz", mnistTestImages,
		"mnist/t10k-labels-idx1-ubyte.gz", mnistTestLabels); err != nil {
		return nil, nil, err
	}
	train.Classes, test.Classes = 10, 10
	return train, test, nil
}

func idxFromBytes(name, imgName string, img []byte, labName string, lab []byte) (*Dataset, error) {
	a, err := ReadIDX(bytes.NewReader(img), imgName)
	if err != nil {
		return nil, err
	}
	b, err := ReadIDX(bytes.NewReader(lab), labName)
	if err != nil {
		return nil, err
	}
	d, err := idxDataset(name, a, b)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// loadIDXDir loads the train and test IDX pairs found in dir.
func loadIDXDir(dir string) (train, test *Dataset, err error) {
	find := func(prefixes []string, kind, rank string) (string, error) {
		var tried []string
		for _, p := range prefixes {
			for _, sep := range []string{"-", "."} {
				for _, gz := range []string{"", ".gz"} {
					name := p + "-" + kind + sep + rank + "-ubyte" + gz
					path := filepath.Join(dir, name)
					if _, err := os.Stat(path); err == nil {
						return path, nil
					} else if !errors.Is(err, fs.ErrNotExist) {
						return "", fmt.Errorf("data: dataset idx:%s: %w", dir, err)
					}
					tried = append(tried, name)
				}
			}
		}
		return "", fmt.Errorf("data: dataset idx:%s: no %s %s file; looked for %s", dir, prefixes[0], kind, strings.Join(tried, ", "))
	}
	paths := make([]string, 4)
	for i, q := range []struct {
		prefixes   []string
		kind, rank string
	}{
		{[]string{"train"}, "images", "idx3"},
		{[]string{"train"}, "labels", "idx1"},
		{[]string{"t10k", "test"}, "images", "idx3"},
		{[]string{"t10k", "test"}, "labels", "idx1"},
	} {
		if paths[i], err = find(q.prefixes, q.kind, q.rank); err != nil {
			return nil, nil, err
		}
	}
	if train, err = LoadIDX(paths[0], paths[1]); err != nil {
		return nil, nil, err
	}
	if test, err = LoadIDX(paths[2], paths[3]); err != nil {
		return nil, nil, err
	}
	if train.Dim != test.Dim {
		return nil, nil, fmt.Errorf("data: dataset idx:%s: train images have %d pixels (%s) but test images %d (%s)",
			dir, train.Dim, paths[0], test.Dim, paths[2])
	}
	train.Name, test.Name = "idx:"+dir+":train", "idx:"+dir+":test"
	c := max(train.Classes, test.Classes)
	train.Classes, test.Classes = c, c
	return train, test, nil
}

// loadCSVSpec loads "csv:FILE[?options]"; rest is what follows "csv:".
func loadCSVSpec(spec, rest string) (train, test *Dataset, err error) {
	path, query := rest, ""
	if i := strings.LastIndexByte(rest, '?'); i >= 0 {
		path, query = rest[:i], rest[i+1:]
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("data: dataset %q: %s; allowed forms: %s", spec, fmt.Sprintf(format, args...), SpecForms)
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return nil, nil, bad("options %q: %v", query, err)
	}
	opt := CSVOptions{Header: -1}
	testFrac, seed := DefaultTestFrac, int64(SplitSeed)
	standardize := false
	for key, vs := range vals {
		v := vs[len(vs)-1]
		switch key {
		case "label":
			opt.Label = v
		case "header":
			switch strings.ToLower(v) {
			case "auto", "":
				opt.Header = -1
			case "true", "yes", "1":
				opt.Header = 1
			case "false", "no", "0":
				opt.Header = 0
			default:
				return nil, nil, bad("option header=%q, want auto, true or false", v)
			}
		case "standardize":
			if standardize, err = strconv.ParseBool(v); err != nil {
				return nil, nil, bad("option standardize=%q, want true or false", v)
			}
		case "classes":
			if opt.Classes, err = strconv.Atoi(v); err != nil || opt.Classes < 0 || opt.Classes > MaxClasses {
				return nil, nil, bad("option classes=%q, want an integer in [0, %d]", v, MaxClasses)
			}
		case "test":
			if testFrac, err = strconv.ParseFloat(v, 64); err != nil || !(testFrac >= 0 && testFrac < 1) {
				return nil, nil, bad("option test=%q, want a fraction in [0, 1)", v)
			}
		case "seed":
			if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, nil, bad("option seed=%q, want an integer", v)
			}
		default:
			return nil, nil, bad("unknown option %q (known: label, header, standardize, classes, test, seed)", key)
		}
	}
	d, err := LoadCSV(path, opt)
	if err != nil {
		return nil, nil, err
	}
	if train, test, err = Split(d, testFrac, seed); err != nil {
		return nil, nil, err
	}
	if standardize {
		Standardize(train, test)
	}
	return train, test, nil
}

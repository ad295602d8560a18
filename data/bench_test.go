package data

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"io"
	"testing"
)

// BenchmarkReadIDX decodes the embedded MNIST training images. Baseline:
// gzip decompression alone into io.Discard, the floor for any decoder.
func BenchmarkReadIDX(b *testing.B) {
	b.Run("baseline-gunzip", func(b *testing.B) {
		b.SetBytes(47040016)
		for b.Loop() {
			zr, err := gzip.NewReader(bytes.NewReader(mnistTrainImages))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadIDX", func(b *testing.B) {
		b.SetBytes(47040016)
		for b.Loop() {
			if _, err := ReadIDX(bytes.NewReader(mnistTrainImages), "train-images"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIDXToDataset converts decoded MNIST bytes to scaled float32.
// Baseline: the plain per-element conversion through IDX.Value.
func BenchmarkIDXToDataset(b *testing.B) {
	img, err := ReadIDX(bytes.NewReader(mnistTrainImages), "img")
	if err != nil {
		b.Fatal(err)
	}
	lab, err := ReadIDX(bytes.NewReader(mnistTrainLabels), "lab")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline-Value", func(b *testing.B) {
		x := make([]float32, img.Len())
		for b.Loop() {
			for i := range x {
				x[i] = float32(img.Value(i) / 255)
			}
		}
	})
	b.Run("idxDataset", func(b *testing.B) {
		for b.Loop() {
			if _, err := idxDataset("mnist", img, lab); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReadCSV parses the embedded digits table. Baseline:
// encoding/csv tokenising the same bytes without converting any cell.
func BenchmarkReadCSV(b *testing.B) {
	zr, err := gzip.NewReader(bytes.NewReader(digitsCSV))
	if err != nil {
		b.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline-encoding-csv", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			r := csv.NewReader(bytes.NewReader(plain))
			r.ReuseRecord = true
			for {
				if _, err := r.Read(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("ReadCSV", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			if _, err := ReadCSV(bytes.NewReader(plain), "digits", CSVOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPartition splits an MNIST-sized label vector (60,000 rows, 10
// classes) among 100 clients. Baseline: "iid", a shuffle and a cut.
func BenchmarkPartition(b *testing.B) {
	d := synthetic(60000, 10)
	for _, spec := range []string{"iid", "shards:2", "dirichlet:0.1", "quantity:0.5"} {
		name := spec
		if spec == "iid" {
			name = "baseline-iid"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Partition(d, 100, spec, 0.1, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

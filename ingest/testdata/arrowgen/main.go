// Command arrowgen writes ../arrow-go-v14.parquet with Arrow's Go Parquet
// writer (github.com/apache/arrow/go/v14) and its default properties, which
// make the root group "repeated". The ingest tests read that file; run
// `go run .` here to write it again.
//
// Its columns are what pandas and Arrow users produce: an integer column
// with nulls stored as DOUBLE (7.0), lists, optional scalars.
package main

import (
	"log"
	"os"
	"time"

	"github.com/apache/arrow/go/v14/arrow"
	"github.com/apache/arrow/go/v14/arrow/array"
	"github.com/apache/arrow/go/v14/arrow/memory"
	"github.com/apache/arrow/go/v14/parquet"
	"github.com/apache/arrow/go/v14/parquet/pqarrow"
)

func main() {
	mem := memory.NewGoAllocator()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "driver_id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "event_timestamp", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
		{Name: "conv_rate", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "acc_rate", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "avg_daily_trips", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "rating", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "vehicle_type", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "is_active", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "recent_trip_km", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "recent_ratings", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "recent_zones", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	valid := []bool{true, false, true, true}
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3, 4}, nil)
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 4; i++ {
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(t0.Add(time.Duration(i) * time.Minute).UnixMicro()))
	}
	b.Field(2).(*array.Float32Builder).AppendValues([]float32{0.5, 0, 0.25, 1}, valid)
	b.Field(3).(*array.Float32Builder).AppendValues([]float32{0.75, 0, 0.5, 1}, valid)
	// An integer column with a null, as pandas stores it: 7.5 is not an integer.
	b.Field(4).(*array.Float64Builder).AppendValues([]float64{12, 0, 7, 7.5}, valid)
	b.Field(5).(*array.Float64Builder).AppendValues([]float64{4.5, 0, 3.25, 1}, valid)
	b.Field(6).(*array.StringBuilder).AppendValues([]string{"sedan", "", "bike", "van"}, valid)
	b.Field(7).(*array.BooleanBuilder).AppendValues([]bool{true, false, false, true}, valid)
	km := b.Field(8).(*array.ListBuilder)
	ratings := b.Field(9).(*array.ListBuilder)
	zones := b.Field(10).(*array.ListBuilder)
	for i := 0; i < 4; i++ {
		switch i {
		case 1: // null lists
			km.AppendNull()
			ratings.AppendNull()
			zones.AppendNull()
		case 2: // empty lists
			km.Append(true)
			ratings.Append(true)
			zones.Append(true)
		default:
			km.Append(true)
			km.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{1.5, float32(i)}, nil)
			ratings.Append(true)
			ratings.ValueBuilder().(*array.Int32Builder).AppendValues([]int32{5, -int32(i)}, nil)
			zones.Append(true)
			zones.ValueBuilder().(*array.StringBuilder).AppendValues([]string{"a", "b"}, nil)
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.Record{rec})
	defer tbl.Release()
	f, err := os.Create("../arrow-go-v14.parquet")
	if err != nil {
		log.Fatal(err)
	}
	// WriteTable closes f.
	if err := pqarrow.WriteTable(tbl, f, 1024, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps()); err != nil {
		log.Fatal(err)
	}
}

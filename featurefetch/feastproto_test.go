package featurefetch

import (
	"bytes"
	"encoding/binary"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// This file encodes Feast data with the protobuf library's generic
// (descriptor-driven) machinery, independently of layout.go, so tests that
// write with it and read with the package cannot pass on a symmetric bug.

// valueDesc is feast.types.Value built from a descriptor equivalent to
// protos/feast/types/Value.proto (fields 1-19).
var valueDesc = func() protoreflect.MessageDescriptor {
	list := func(name string, t descriptorpb.FieldDescriptorProto_Type) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{
			Name: proto.String(name),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name:   proto.String("val"),
				Number: proto.Int32(1),
				Label:  descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
				Type:   t.Enum(),
			}},
		}
	}
	oneof := func(name string, num int32, t descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:       proto.String(name),
			Number:     proto.Int32(num),
			Label:      descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:       t.Enum(),
			OneofIndex: proto.Int32(0),
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		tBytes  = descriptorpb.FieldDescriptorProto_TYPE_BYTES
		tString = descriptorpb.FieldDescriptorProto_TYPE_STRING
		tInt32  = descriptorpb.FieldDescriptorProto_TYPE_INT32
		tInt64  = descriptorpb.FieldDescriptorProto_TYPE_INT64
		tDouble = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
		tFloat  = descriptorpb.FieldDescriptorProto_TYPE_FLOAT
		tBool   = descriptorpb.FieldDescriptorProto_TYPE_BOOL
		tMsg    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		tEnum   = descriptorpb.FieldDescriptorProto_TYPE_ENUM
	)
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("feast/types/Value.proto"),
		Package: proto.String("feast.types"),
		Syntax:  proto.String("proto3"),
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name:  proto.String("Null"),
			Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("NULL"), Number: proto.Int32(0)}},
		}},
		MessageType: []*descriptorpb.DescriptorProto{
			list("BytesList", tBytes),
			list("StringList", tString),
			list("Int32List", tInt32),
			list("Int64List", tInt64),
			list("DoubleList", tDouble),
			list("FloatList", tFloat),
			list("BoolList", tBool),
			{
				Name: proto.String("Value"),
				Field: []*descriptorpb.FieldDescriptorProto{
					oneof("bytes_val", 1, tBytes, ""),
					oneof("string_val", 2, tString, ""),
					oneof("int32_val", 3, tInt32, ""),
					oneof("int64_val", 4, tInt64, ""),
					oneof("double_val", 5, tDouble, ""),
					oneof("float_val", 6, tFloat, ""),
					oneof("bool_val", 7, tBool, ""),
					oneof("unix_timestamp_val", 8, tInt64, ""),
					oneof("bytes_list_val", 11, tMsg, ".feast.types.BytesList"),
					oneof("string_list_val", 12, tMsg, ".feast.types.StringList"),
					oneof("int32_list_val", 13, tMsg, ".feast.types.Int32List"),
					oneof("int64_list_val", 14, tMsg, ".feast.types.Int64List"),
					oneof("double_list_val", 15, tMsg, ".feast.types.DoubleList"),
					oneof("float_list_val", 16, tMsg, ".feast.types.FloatList"),
					oneof("bool_list_val", 17, tMsg, ".feast.types.BoolList"),
					oneof("unix_timestamp_list_val", 18, tMsg, ".feast.types.Int64List"),
					oneof("null_val", 19, tEnum, ".feast.types.Null"),
				},
				OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("val")}},
			},
		},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		panic("BUG: invalid Value descriptor: " + err.Error())
	}
	return fd.Messages().ByName("Value")
}()

// pbValue encodes v as a feast.types.Value member typ with dynamicpb.
// v is []byte, string, int32, int64, float64, float32 or bool for scalars
// (int64 for UNIX_TIMESTAMP), a slice of those for lists, nil for an empty
// Value, and TypeNull for null_val.
func pbValue(t testing.TB, typ ValueType, v any) []byte {
	t.Helper()
	msg := dynamicpb.NewMessage(valueDesc)
	if v != nil {
		fd := valueDesc.Fields().ByNumber(protoreflect.FieldNumber(typ))
		if fd == nil {
			t.Fatalf("no Value field %d", typ)
		}
		switch x := v.(type) {
		case []byte:
			msg.Set(fd, protoreflect.ValueOfBytes(x))
		case string:
			msg.Set(fd, protoreflect.ValueOfString(x))
		case int32:
			msg.Set(fd, protoreflect.ValueOfInt32(x))
		case int64:
			msg.Set(fd, protoreflect.ValueOfInt64(x))
		case float64:
			msg.Set(fd, protoreflect.ValueOfFloat64(x))
		case float32:
			msg.Set(fd, protoreflect.ValueOfFloat32(x))
		case bool:
			msg.Set(fd, protoreflect.ValueOfBool(x))
		case ValueType: // TypeNull
			msg.Set(fd, protoreflect.ValueOfEnum(0))
		default:
			sub := dynamicpb.NewMessage(fd.Message())
			l := sub.Mutable(fd.Message().Fields().ByNumber(1)).List()
			switch xs := v.(type) {
			case [][]byte:
				for _, e := range xs {
					l.Append(protoreflect.ValueOfBytes(e))
				}
			case []string:
				for _, e := range xs {
					l.Append(protoreflect.ValueOfString(e))
				}
			case []int32:
				for _, e := range xs {
					l.Append(protoreflect.ValueOfInt32(e))
				}
			case []int64:
				for _, e := range xs {
					l.Append(protoreflect.ValueOfInt64(e))
				}
			case []float64:
				for _, e := range xs {
					l.Append(protoreflect.ValueOfFloat64(e))
				}
			case []float32:
				for _, e := range xs {
					l.Append(protoreflect.ValueOfFloat32(e))
				}
			case []bool:
				for _, e := range xs {
					l.Append(protoreflect.ValueOfBool(e))
				}
			default:
				t.Fatalf("pbValue: unsupported Go type %T", v)
			}
			msg.Set(fd, protoreflect.ValueOfMessage(sub))
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		t.Fatalf("marshal Value: %v", err)
	}
	return b
}

// pbUnmarshalValue parses b as feast.types.Value.
func pbUnmarshalValue(t testing.TB, b []byte) *dynamicpb.Message {
	t.Helper()
	msg := dynamicpb.NewMessage(valueDesc)
	if err := proto.Unmarshal(b, msg); err != nil {
		t.Fatalf("unmarshal Value %x: %v", b, err)
	}
	return msg
}

// pbTimestamp encodes t as google.protobuf.Timestamp with the generated type.
func pbTimestamp(t testing.TB, ts time.Time) []byte {
	t.Helper()
	b, err := proto.Marshal(timestamppb.New(ts))
	if err != nil {
		t.Fatalf("marshal Timestamp: %v", err)
	}
	return b
}

// testKey is one join key and its value for refEntityKey.
type testKey struct {
	name string
	typ  ValueType
	val  any // int64, int32, string or []byte
}

// refEntityKey writes Feast's serialize_entity_key v3 plus project, following
// key_encoding_utils.py step by step.
func refEntityKey(project string, keys ...testKey) string {
	ks := append([]testKey(nil), keys...)
	sort.Slice(ks, func(i, j int) bool { return ks[i].name < ks[j].name })
	var b bytes.Buffer
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	w(uint32(len(ks)))
	for _, k := range ks {
		w(uint32(2))
		w(uint32(len(k.name)))
		b.WriteString(k.name)
	}
	for _, k := range ks {
		w(uint32(k.typ))
		switch v := k.val.(type) {
		case int64:
			w(uint32(8))
			w(v)
		case int32:
			w(uint32(4))
			w(v)
		case string:
			w(uint32(len(v)))
			b.WriteString(v)
		case []byte:
			w(uint32(len(v)))
			b.Write(v)
		}
	}
	b.WriteString(project)
	return b.String()
}

package featurefetch

import "fmt"

// ValueType is Feast's ValueType enum; its numbers equal the field numbers of
// the matching feast.types.Value oneof member.
type ValueType int32

// Value types supported by the layout code.
const (
	TypeInvalid           ValueType = 0
	TypeBytes             ValueType = 1
	TypeString            ValueType = 2
	TypeInt32             ValueType = 3
	TypeInt64             ValueType = 4
	TypeDouble            ValueType = 5
	TypeFloat             ValueType = 6
	TypeBool              ValueType = 7
	TypeUnixTimestamp     ValueType = 8
	TypeBytesList         ValueType = 11
	TypeStringList        ValueType = 12
	TypeInt32List         ValueType = 13
	TypeInt64List         ValueType = 14
	TypeDoubleList        ValueType = 15
	TypeFloatList         ValueType = 16
	TypeBoolList          ValueType = 17
	TypeUnixTimestampList ValueType = 18
	TypeNull              ValueType = 19
)

var valueTypeNames = map[ValueType]string{
	TypeInvalid:           "INVALID",
	TypeBytes:             "BYTES",
	TypeString:            "STRING",
	TypeInt32:             "INT32",
	TypeInt64:             "INT64",
	TypeDouble:            "DOUBLE",
	TypeFloat:             "FLOAT",
	TypeBool:              "BOOL",
	TypeUnixTimestamp:     "UNIX_TIMESTAMP",
	TypeBytesList:         "BYTES_LIST",
	TypeStringList:        "STRING_LIST",
	TypeInt32List:         "INT32_LIST",
	TypeInt64List:         "INT64_LIST",
	TypeDoubleList:        "DOUBLE_LIST",
	TypeFloatList:         "FLOAT_LIST",
	TypeBoolList:          "BOOL_LIST",
	TypeUnixTimestampList: "UNIX_TIMESTAMP_LIST",
	TypeNull:              "NULL",
}

// String returns Feast's name of t, e.g. "INT64".
func (t ValueType) String() string {
	if s, ok := valueTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("ValueType(%d)", int32(t))
}

// ParseValueType returns the ValueType named s ("INT64", "FLOAT_LIST", ...).
// INVALID and NULL are not accepted: they are not column types.
func ParseValueType(s string) (ValueType, error) {
	for t, name := range valueTypeNames {
		if name == s && t != TypeInvalid && t != TypeNull {
			return t, nil
		}
	}
	return TypeInvalid, fmt.Errorf("unknown value type %q; want one of BYTES, STRING, INT32, INT64, DOUBLE, FLOAT, BOOL, "+
		"UNIX_TIMESTAMP or one of them with a _LIST suffix", s)
}

// IsList reports whether t is one of the *_LIST types.
func (t ValueType) IsList() bool {
	return t >= TypeBytesList && t <= TypeUnixTimestampList
}

// elem returns the element type of a list type, or t itself.
func (t ValueType) elem() ValueType {
	if t.IsList() {
		return t - 10
	}
	return t
}

// validEntityType reports whether t may be used in an entity key.
func validEntityType(t ValueType) bool {
	switch t {
	case TypeString, TypeBytes, TypeInt32, TypeInt64:
		return true
	}
	return false
}

// Status is Feast's FieldStatus of one returned value.
type Status uint8

// Feature statuses, numbered as in Feast's serving API. Like Feast's servers,
// Lariat never answers NULL_VALUE: a stored null is PRESENT with value null.
const (
	StatusInvalid       Status = 0
	StatusPresent       Status = 1
	StatusNullValue     Status = 2
	StatusNotFound      Status = 3
	StatusOutsideMaxAge Status = 4
)

var statusNames = [...]string{"INVALID", "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"}

// String returns Feast's name of s, e.g. "NOT_FOUND".
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

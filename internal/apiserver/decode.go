package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// decodeJSON reads one JSON object of at most MaxBodyBytes into dst,
// rejecting unknown fields (naming them by their full path, e.g.
// "bmc.passwd"), trailing data and non-JSON content types.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return badRequest("", "Content-Type must be application/json, not %q", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge,
				message: fmt.Sprintf("request body is larger than %d bytes", api.MaxBodyBytes)}
		}
		return badRequest("", "reading the request body: %v", err)
	}
	return decodeBody(body, dst)
}

// decodeBody is decodeJSON without the HTTP parts; the fuzz target drives it.
func decodeBody(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(body, dst, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "unexpected data after the JSON object")
	}
	return checkKeys(json.NewDecoder(bytes.NewReader(body)), reflect.TypeOf(dst), "")
}

// checkKeys walks a body that decoded cleanly against t and refuses what
// encoding/json lets through: a key given twice in one object (it keeps
// the last, so two readers of one body could see different requests) and
// a key that names a field only up to case ("Name" for "name").
func checkKeys(dec *json.Decoder, t reflect.Type, prefix string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return nil //nolint:nilerr // decoded already: cannot happen
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil //nolint:nilerr // as above: the body decoded already
			}
			key, _ := kt.(string)
			if seen[key] {
				return badRequest(prefix+key, "key %q appears twice in one object", prefix+key)
			}
			seen[key] = true
			var child reflect.Type
			switch {
			case fields != nil:
				child = fields[key]
				if child == nil {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return badRequest(prefix+key, "unknown field %q (field names are case-sensitive: %q)", prefix+key, prefix+name)
						}
					}
				}
			case t != nil && t.Kind() == reflect.Map:
				child = t.Elem()
			}
			if err := checkKeys(dec, child, prefix+key+"."); err != nil {
				return err
			}
		}
		_, _ = dec.Token() // the closing brace (the body decoded already: no error)
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkKeys(dec, elem, fmt.Sprintf("%s[%d].", strings.TrimSuffix(prefix, "."), i)); err != nil {
				return err
			}
		}
		_, _ = dec.Token() // the closing bracket (as above)
	}
	return nil
}

func decodeError(body []byte, dst any, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("", "request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "request body ends in the middle of the JSON object")
	case errors.As(err, &syntax):
		return badRequest("", "malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("", "the body must be a JSON object, not %s", typ.Value)
		}
		return badRequest(typ.Field, "field %s must be %s, not %s", typ.Field, jsonKind(typ.Type), typ.Value)
	}
	// encoding/json reports an unknown field only by its last name
	// (`json: unknown field "x"`); find its full path so the caller knows
	// which object it sits in.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		field := unknownFieldPath(body, reflect.TypeOf(dst))
		if field == "" {
			field = name
		}
		return badRequest(field, "unknown field %q", field)
	}
	return badRequest("", "invalid JSON body: %v", err)
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// unknownFieldPath walks the generic form of body against t and returns the
// dotted path of the first key t does not declare, or "".
func unknownFieldPath(body []byte, t reflect.Type) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return walkUnknown(v, t, "")
}

func walkUnknown(v any, t reflect.Type, prefix string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, known := fields[k]
			if !known {
				// encoding/json matches names case-insensitively.
				for name, f := range fields {
					if strings.EqualFold(name, k) {
						ft, known = f, true
						break
					}
				}
			}
			if !known {
				return prefix + k
			}
			if p := walkUnknown(obj[k], ft, prefix+k+"."); p != "" {
				return p
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return ""
		}
		base := strings.TrimSuffix(prefix, ".")
		for i, e := range arr {
			if p := walkUnknown(e, t.Elem(), fmt.Sprintf("%s[%d].", base, i)); p != "" {
				return p
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		for k, e := range obj {
			if p := walkUnknown(e, t.Elem(), prefix+k+"."); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonFields maps a struct's JSON names to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

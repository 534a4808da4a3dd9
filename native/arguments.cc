#include "arguments.h"

#include <climits>
#include <cmath>

#include "errors.h"

namespace tableroll {

static bool Fail(Napi::Env env, const char* name, const char* expected, Napi::Value value) {
  static const char* const kTypes[] = {"undefined", "null",   "boolean",  "number",   "string",
                                       "symbol",    "object", "function", "external", "bigint"};
  ThrowCoded(Napi::TypeError::New(env, std::string("The \"") + name + "\" argument must be " +
                                           expected + ". Received type " + kTypes[value.Type()]),
             "ERR_INVALID_ARG_TYPE");
  return false;
}

bool ReadInt(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min,
             int64_t max, int* out) {
  Napi::Value value = info[index];
  if (!value.IsNumber()) return Fail(info.Env(), name, "of type number", value);
  double number = value.As<Napi::Number>().DoubleValue();
  // Written so that NaN fails too: it would otherwise become fd 0.
  if (std::trunc(number) == number && number >= min && number <= max) {
    *out = static_cast<int>(number);
    return true;
  }
  ThrowCoded(Napi::RangeError::New(info.Env(), std::string("The value of \"") + name +
                                                   "\" is out of range. It must be an integer >= " +
                                                   std::to_string(min) + " and <= " +
                                                   std::to_string(max) + ". Received " +
                                                   value.ToString().Utf8Value()),
             "ERR_OUT_OF_RANGE");
  return false;
}

bool ReadFd(const Napi::CallbackInfo& info, size_t index, int* out) {
  return ReadInt(info, index, "fd", 0, INT_MAX, out);
}

bool ReadBool(const Napi::CallbackInfo& info, size_t index, const char* name, bool* out) {
  if (!info[index].IsBoolean()) return Fail(info.Env(), name, "of type boolean", info[index]);
  *out = info[index].As<Napi::Boolean>().Value();
  return true;
}

bool ReadPath(const Napi::CallbackInfo& info, size_t index, const char* name, std::string* out) {
  if (!info[index].IsString()) return Fail(info.Env(), name, "of type string", info[index]);
  *out = info[index].As<Napi::String>().Utf8Value();
  if (out->find('\0') == std::string::npos) return true;
  ThrowCoded(Napi::TypeError::New(info.Env(), std::string("The argument '") + name +
                                                  "' must not contain null bytes"),
             "ERR_INVALID_ARG_VALUE");
  return false;
}

bool ReadBytes(const Napi::CallbackInfo& info, size_t index, const char* name, uint8_t** data,
               size_t* length) {
  Napi::Value value = info[index];
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    return Fail(info.Env(), name, "an instance of Uint8Array", value);
  }
  *data = value.As<Napi::Uint8Array>().Data();
  *length = value.As<Napi::Uint8Array>().ByteLength();
  return true;
}

bool ReadOptions(const Napi::CallbackInfo& info, size_t index, const char* name,
                 Napi::Object* out) {
  Napi::Value value = info[index];
  if (!value.IsUndefined() && !value.IsObject()) return Fail(info.Env(), name, "an object", value);
  *out = value.IsUndefined() ? Napi::Object::New(info.Env()) : value.As<Napi::Object>();
  return true;
}

}  // namespace tableroll

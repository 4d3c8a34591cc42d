#include "request_checks.h"

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>

#include <string>

namespace xbar::server {

namespace {

using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string allowed_values(const EnumDescriptor& e) {
  std::string out;
  for (int i = 0; i < e.value_count(); ++i) {
    out += fmt::format("{}{} ({})", i == 0 ? "" : ", ", e.value(i)->name(), e.value(i)->number());
  }
  return out;
}

grpc::Status bad_enum(const std::string& path, int value, const EnumDescriptor& e) {
  return {grpc::StatusCode::INVALID_ARGUMENT,
          fmt::format("{} = {}: not a {}; allowed {}", path, value, e.name(), allowed_values(e))};
}

grpc::Status walk(const Message& m, const std::string& prefix) {
  const auto* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const auto type = f->cpp_type();
    if (type != FieldDescriptor::CPPTYPE_ENUM && type != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    if (f->is_repeated()) {
      const int n = r->FieldSize(m, f);
      for (int j = 0; j < n; ++j) {
        const std::string item = fmt::format("{}[{}]", path, j);
        if (type == FieldDescriptor::CPPTYPE_ENUM) {
          const int v = r->GetRepeatedEnumValue(m, f, j);
          if (f->enum_type()->FindValueByNumber(v) == nullptr) {
            return bad_enum(item, v, *f->enum_type());
          }
        } else if (auto st = walk(r->GetRepeatedMessage(m, f, j), item); !st.ok()) {
          return st;
        }
      }
      continue;
    }
    if (type == FieldDescriptor::CPPTYPE_ENUM) {
      const int v = r->GetEnumValue(m, f);
      if (f->enum_type()->FindValueByNumber(v) == nullptr)
        return bad_enum(path, v, *f->enum_type());
    } else if (r->HasField(m, f)) {
      if (auto st = walk(r->GetMessage(m, f), path); !st.ok()) return st;
    }
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status check_enums(const Message& request) { return walk(request, ""); }

}  // namespace xbar::server

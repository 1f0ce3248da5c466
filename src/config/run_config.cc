// Reading a RunConfig from TOML and --set overrides, and writing it back.
//
// Parsing is two passes over the schema (config_schema.h): the file's TOML tree is walked key by
// key into a default RunConfig, then each override is resolved to one member and assigned. Only
// then does validate() see the result, so ranges and cross-field rules apply to the final values
// whichever source set them.
#include "config/run_config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>

#include "config/config_schema.h"
#include "core/error.h"

namespace sy {
namespace {

using config_schema::fail_key;
using config_schema::Field;
using config_schema::full_key;
using config_schema::Section;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
// Clang before 17 lacks aggregate CTAD, so spell the guide out.
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) return parts;
    start = pos + 1;
  }
}

// A value as the user wrote it, with its TOML type, for "got ..." in messages.
std::string describe(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return fmt::format("\"{}\" (a string)", n.as_string()->get());
    case toml::node_type::integer:
      return fmt::format("{} (an integer)", n.as_integer()->get());
    case toml::node_type::floating_point:
      return fmt::format("{} (a float)", n.as_floating_point()->get());
    case toml::node_type::boolean:
      return fmt::format("{} (a boolean)", n.as_boolean()->get());
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default: {
      std::ostringstream os;
      n.visit([&](auto&& v) { os << v; });
      return fmt::format("{} (a date/time)", os.str());
    }
  }
}

[[noreturn]] void fail_unknown(std::string_view origin, std::string_view key,
                               const std::vector<std::string>& candidates) {
  std::string best = config_schema::closest(key, candidates);
  if (!best.empty()) {
    fail(fmt::format("{}: unknown key \"{}\"; did you mean \"{}\"?", origin, key, best));
  }
  fail(fmt::format("{}: unknown key \"{}\"; every key is listed in docs/config.md", origin, key));
}

// Assigns node `n` to field `f`. `raw`, when given (--set), is the override's text: a string
// field then takes it verbatim if `n` is not a TOML string, so `--set out_dir=runs/2024` works.
void assign(const Field& f, const toml::node& n, std::string_view origin, std::string_view key,
            const std::string_view* raw) {
  std::visit(
      Overloaded{
          [&](int64_t* p) {
            if (const auto* v = n.as_integer()) {
              *p = v->get();
              return;
            }
            fail_key(origin, key, "an integer", describe(n),
                     fmt::format("write a whole number without quotes, e.g. {} = 4", f.name));
          },
          [&](uint64_t* p) {
            const auto* v = n.as_integer();
            if (v && v->get() >= 0) {
              *p = static_cast<uint64_t>(v->get());
              return;
            }
            fail_key(origin, key, "a non-negative integer", describe(n),
                     fmt::format("write a whole number without quotes, e.g. {} = 42", f.name));
          },
          [&](double* p) {
            // An integer is a fine spelling of a real number (`rope_theta = 10000`).
            if (const auto* v = n.as_floating_point()) {
              *p = v->get();
              return;
            }
            if (const auto* v = n.as_integer()) {
              *p = static_cast<double>(v->get());
              return;
            }
            fail_key(origin, key, "a number", describe(n),
                     fmt::format("write it without quotes, e.g. {} = 0.5", f.name));
          },
          [&](std::string* p) {
            if (const auto* v = n.as_string()) {
              *p = v->get();
              return;
            }
            if (raw != nullptr) {
              *p = std::string(*raw);
              return;
            }
            fail_key(origin, key, "a string", describe(n),
                     fmt::format("quote it, e.g. {} = \"...\"", f.name));
          },
      },
      f.ptr);
}

const Field* find_field(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// Sets the keys present in `t` on `term`; absent keys keep their current values.
void read_term(const toml::table& t, BalanceTerm& term, size_t index, std::string_view origin,
               const std::string_view* raw) {
  std::vector<Field> fields = config_schema::term_fields(term);
  for (auto&& [k, v] : t) {
    std::string key = fmt::format("balance.terms.{}.{}", index, k.str());
    const Field* f = find_field(fields, k.str());
    if (f == nullptr) fail_unknown(origin, key, config_schema::all_keys(index));
    assign(*f, v, origin, key, raw);
  }
}

// Replaces `terms` with the array's tables; each starts from BalanceTerm's defaults.
void read_terms(const toml::node& n, std::vector<BalanceTerm>& terms, std::string_view origin) {
  const toml::array* a = n.as_array();
  if (a == nullptr) {
    fail_key(origin, "balance.terms", "an array of tables", describe(n),
             "write [[balance.terms]] sections, or balance.terms = [] for no balancing loss");
  }
  terms.clear();
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::table* t = (*a)[i].as_table();
    if (t == nullptr) {
      fail_key(origin, fmt::format("balance.terms.{}", i), "a table", describe((*a)[i]),
               "e.g. { type = \"lbl\", scope = \"micro\", coef = 0.01 }");
    }
    terms.emplace_back();
    read_term(*t, terms.back(), i, origin, nullptr);
  }
}

Section* find_section(std::vector<Section>& secs, std::string_view name) {
  for (Section& s : secs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

void read_root(const toml::table& root, RunConfig& cfg, std::string_view origin) {
  std::vector<Section> secs = config_schema::sections(cfg);
  Section& top = *find_section(secs, "");
  for (auto&& [k, v] : root) {
    std::string_view name = k.str();
    if (const Field* f = find_field(top.fields, name)) {
      assign(*f, v, origin, name, nullptr);
      continue;
    }
    if (name == "balance") {
      const toml::table* t = v.as_table();
      if (t == nullptr) fail_key(origin, name, "a table", describe(v), "write [[balance.terms]]");
      for (auto&& [bk, bv] : *t) {
        if (bk.str() != "terms") {
          fail_unknown(origin, full_key("balance", bk.str()), config_schema::all_keys());
        }
        read_terms(bv, cfg.balance.terms, origin);
      }
      continue;
    }
    Section* s = name.empty() ? nullptr : find_section(secs, name);
    if (s == nullptr) fail_unknown(origin, name, config_schema::all_keys());
    const toml::table* t = v.as_table();
    if (t == nullptr) {
      fail_key(origin, name, "a table", describe(v), fmt::format("write a [{}] section", name));
    }
    for (auto&& [sk, sv] : *t) {
      std::string key = full_key(name, sk.str());
      const Field* f = find_field(s->fields, sk.str());
      if (f == nullptr) fail_unknown(origin, key, config_schema::all_keys());
      assign(*f, sv, origin, key, nullptr);
    }
  }
}

// The override's value as TOML if it parses as exactly one value; otherwise a bare string, so
// `router.score=sigmoid` needs no shell-quoted quotes.
toml::table parse_override_value(std::string_view raw) {
  try {
    toml::table doc = toml::parse(fmt::format("v = {}", raw));
    if (doc.size() == 1 && doc.contains("v")) return doc;
  } catch (const toml::parse_error&) {
    // Not TOML: a bare string, below.
  }
  toml::table doc;
  doc.insert("v", std::string(raw));
  return doc;
}

std::optional<size_t> parse_index(std::string_view s) {
  size_t i = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return i;
}

void apply_override(RunConfig& cfg, const std::string& text) {
  std::string origin = fmt::format("--set {}", text);
  size_t eq = text.find('=');
  if (eq == std::string::npos) {
    fail_key(origin, "an override", "section.key=value", fmt::format("\"{}\"", text),
             "e.g. --set model.top_k=2 or --set router.score=sigmoid");
  }
  std::string_view key = trim(std::string_view(text).substr(0, eq));
  std::string_view raw = trim(std::string_view(text).substr(eq + 1));
  toml::table doc = parse_override_value(raw);
  const toml::node& value = *doc.get("v");
  std::vector<std::string_view> parts = split(key, '.');
  std::vector<Section> secs = config_schema::sections(cfg);

  if (parts.size() == 1) {
    if (const Field* f = find_field(find_section(secs, "")->fields, key)) {
      assign(*f, value, origin, key, &raw);
      return;
    }
    if (key == "balance" || (!key.empty() && find_section(secs, key) != nullptr)) {
      fail(fmt::format("{}: \"{}\" is a section; set one of its keys, e.g. --set {}", origin, key,
                       key == "balance" ? "balance.terms.0.coef=0.01" : "model.d_model=128"));
    }
  } else if (parts.size() == 2 && parts[0] != "balance") {
    Section* s = parts[0].empty() ? nullptr : find_section(secs, parts[0]);
    const Field* f = s == nullptr ? nullptr : find_field(s->fields, parts[1]);
    if (f != nullptr) {
      assign(*f, value, origin, key, &raw);
      return;
    }
  } else if (parts.size() == 2 && parts[1] == "terms") {
    read_terms(value, cfg.balance.terms, origin);
    return;
  } else if ((parts.size() == 3 || parts.size() == 4) && parts[0] == "balance" &&
             parts[1] == "terms") {
    std::vector<BalanceTerm>& terms = cfg.balance.terms;
    std::optional<size_t> index = parse_index(parts[2]);
    if (!index || *index > terms.size()) {
      fail_key(origin, "the index in balance.terms.<index>",
               fmt::format("an integer in [0, {}] ({} appends a term)", terms.size(), terms.size()),
               fmt::format("\"{}\"", parts[2]));
    }
    // Index == size appends a default term, which the key then edits.
    if (*index == terms.size()) terms.emplace_back();
    BalanceTerm& term = terms[*index];
    if (parts.size() == 3) {
      const toml::table* t = value.as_table();
      if (t == nullptr) {
        fail_key(origin, key, "an inline table", describe(value),
                 "e.g. --set 'balance.terms.1={type=\"lbl\", scope=\"micro\", coef=0.001}'");
      }
      read_term(*t, term, *index, origin, nullptr);
      return;
    }
    std::vector<Field> fields = config_schema::term_fields(term);
    if (const Field* f = find_field(fields, parts[3])) {
      assign(*f, value, origin, key, &raw);
      return;
    }
    fail_unknown(origin, key, config_schema::all_keys(*index));
  }
  fail_unknown(origin, key, config_schema::all_keys());
}

// Shortest text that reads back to the same double, always spelled as a TOML float.
std::string format_double(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", x);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += fmt::format("\\u{:04X}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

void write_fields(std::string& out, const std::vector<Field>& fields) {
  for (const Field& f : fields) {
    std::string value = std::visit(Overloaded{
                                       [](const int64_t* p) { return fmt::format("{}", *p); },
                                       [](const uint64_t* p) { return fmt::format("{}", *p); },
                                       [](const double* p) { return format_double(*p); },
                                       [](const std::string* p) { return quote(*p); },
                                   },
                                   f.ptr);
    out += fmt::format("{} = {}\n", f.name, value);
  }
}

}  // namespace

namespace config_schema {

RunConfig parse_unvalidated(const std::string& toml_text, const std::vector<std::string>& overrides,
                            const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    fail(fmt::format("{}:{}:{}: invalid TOML: {}", origin, e.source().begin.line,
                     e.source().begin.column, e.description()));
  }
  RunConfig cfg;
  read_root(root, cfg, origin);
  for (const std::string& o : overrides) apply_override(cfg, o);
  return cfg;
}

}  // namespace config_schema

RunConfig parse_run_config(const std::string& toml_text, const std::vector<std::string>& overrides,
                           const std::string& origin) {
  RunConfig cfg = config_schema::parse_unvalidated(toml_text, overrides, origin);
  config_schema::validate(cfg, origin);
  return resolve_defaults(std::move(cfg));
}

RunConfig resolve_defaults(RunConfig cfg) {
  if (cfg.router.score == "auto")
    cfg.router.score = cfg.loss_free.update != "off" ? "sigmoid" : "softmax";
  return cfg;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    const char* got =
        std::filesystem::exists(path, ec) ? "something else (a directory?)" : "no such file";
    fail(
        fmt::format("{}: the config file must be a regular file, got {}; check the path, or start "
                    "from configs/tiny.toml",
                    path, got));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || !text) fail(fmt::format("{}: config file could not be read", path));
  return parse_run_config(text.str(), overrides, path);
}

void validate(const RunConfig& cfg) { config_schema::validate(cfg, "config"); }

std::string toml_quote(std::string_view s) { return quote(s); }

namespace {

constexpr std::string_view kModelSections[] = {"model", "router", "loss_free"};

void append_entries(std::vector<ConfigEntry>& out, std::string_view prefix,
                    const std::vector<Field>& fields) {
  for (const Field& f : fields) {
    ConfigValue v = std::visit([](auto* p) { return ConfigValue(*p); }, f.ptr);
    out.push_back({config_schema::full_key(prefix, f.name), std::move(v)});
  }
}

std::string value_text(const ConfigValue& v) {
  return std::visit(Overloaded{
                        [](int64_t x) { return fmt::format("{}", x); },
                        [](uint64_t x) { return fmt::format("{}", x); },
                        [](double x) { return format_double(x); },
                        [](const std::string& x) { return quote(x); },
                    },
                    v);
}

}  // namespace

std::vector<ConfigEntry> model_entries(const RunConfig& cfg_in) {
  RunConfig cfg = cfg_in;  // the schema binds mutable pointers
  std::vector<ConfigEntry> out;
  for (const Section& s : config_schema::sections(cfg)) {
    for (std::string_view name : kModelSections)
      if (s.name == name) append_entries(out, s.name, s.fields);
  }
  for (size_t i = 0; i < cfg.balance.terms.size(); ++i)
    append_entries(out, fmt::format("balance.terms.{}", i),
                   config_schema::term_fields(cfg.balance.terms[i]));
  return out;
}

std::vector<std::string> resume_conflicts(const RunConfig& saved, const RunConfig& given) {
  std::vector<std::string> out;
  const size_t n_saved = saved.balance.terms.size(), n_given = given.balance.terms.size();
  if (n_saved != n_given)
    out.push_back(
        fmt::format("balance.terms: {} term(s) in the checkpoint, {} given", n_saved, n_given));
  const std::vector<ConfigEntry> a = model_entries(saved), b = model_entries(given);
  // Same schema, so the same keys in the same order up to the shorter list of terms.
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i].value == b[i].value) continue;
    out.push_back(fmt::format("{}: {} in the checkpoint, {} given", a[i].key,
                              value_text(a[i].value), value_text(b[i].value)));
  }
  return out;
}

std::string to_toml(const RunConfig& cfg_in) {
  RunConfig cfg = cfg_in;  // the schema binds mutable pointers
  std::string out =
      "# switchyard run configuration, resolved: every key with the value this run used.\n"
      "# Re-run it exactly with `switchyard train --config <this file>`; keys: docs/config.md.\n";
  for (const Section& s : config_schema::sections(cfg)) {
    if (!s.name.empty()) out += fmt::format("\n[{}]\n", s.name);
    write_fields(out, s.fields);
    if (s.name != "router") continue;
    if (cfg.balance.terms.empty()) out += "\n[balance]\nterms = []\n";
    for (BalanceTerm& term : cfg.balance.terms) {
      out += "\n[[balance.terms]]\n";
      write_fields(out, config_schema::term_fields(term));
    }
  }
  return out;
}

}  // namespace sy

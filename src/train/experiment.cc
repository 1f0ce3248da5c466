#include "train/experiment.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/error.h"

namespace sy {

namespace fs = std::filesystem;

namespace {

std::string str_key(const toml::table& t, const std::string& key, const std::string& where,
                    bool required) {
  const toml::node* n = t.get(key);
  if (!n) {
    SY_CHECK(!required, "{}: `{}` is required", where, key);
    return {};
  }
  const auto* s = n->as_string();
  SY_CHECK(s, "{}: `{}` must be a string", where, key);
  return s->get();
}

std::vector<std::string> set_key(const toml::table& t, const std::string& where) {
  std::vector<std::string> out;
  const toml::node* n = t.get("set");
  if (!n) return out;
  const auto* a = n->as_array();
  SY_CHECK(a, "{}: `set` must be an array of \"section.key=value\" strings", where);
  for (const toml::node& e : *a) {
    const auto* s = e.as_string();
    SY_CHECK(s && s->get().find('=') != std::string::npos,
             "{}: every entry of `set` must be a \"section.key=value\" string", where);
    out.push_back(s->get());
  }
  return out;
}

void only_keys(const toml::table& t, std::initializer_list<std::string_view> allowed,
               const std::string& where) {
  for (const auto& [k, v] : t) {
    (void)v;
    if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end())
      fail(fmt::format("{}: unknown key `{}`; allowed: {}", where, k.str(),
                       fmt::join(allowed, ", ")));
  }
}

bool valid_name(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(),
                     [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                              c == '.';
                     }) &&
         s != "." && s != ".." && s != "report";
}

}  // namespace

Experiment load_experiment(const std::string& path, const std::vector<std::string>& extra,
                           const std::vector<std::string>& only, const std::string& out_dir) {
  std::error_code ec;
  SY_CHECK(fs::is_regular_file(path, ec),
           "{}: the experiment file must be a regular file (see configs/experiments/)", path);
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    fail(fmt::format("{}: not valid TOML: {} (line {})", path, e.description(),
                     e.source().begin.line));
  }
  only_keys(root, {"description", "claim", "base", "out_dir", "set", "runs"}, path);
  Experiment x;
  x.path = path;
  x.description = str_key(root, "description", path, false);
  x.claim = str_key(root, "claim", path, false);
  const std::string base_rel = str_key(root, "base", path, true);
  x.base = (fs::path(path).parent_path() / base_rel).lexically_normal().string();
  x.out_dir = str_key(root, "out_dir", path, true);
  SY_CHECK(!x.out_dir.empty(), "{}: `out_dir` must be a directory path, got \"\"", path);
  if (!out_dir.empty()) x.out_dir = out_dir;
  const std::vector<std::string> common = set_key(root, path);

  const toml::array* runs = root["runs"].as_array();
  SY_CHECK(runs && !runs->empty(),
           "{}: needs at least one [[runs]] table (name = \"...\", set = [...])", path);
  std::set<std::string> names;
  for (size_t i = 0; i < runs->size(); ++i) {
    const toml::table* t = (*runs)[i].as_table();
    const std::string where = fmt::format("{}: runs[{}]", path, i);
    SY_CHECK(t, "{}: must be a table (name = \"...\", set = [...])", where);
    only_keys(*t, {"name", "set"}, where);
    ExperimentRun r;
    r.name = str_key(*t, "name", where, true);
    SY_CHECK(valid_name(r.name),
             "{}: name \"{}\" must be letters, digits, '-', '_' or '.', and not \"report\" (it "
             "becomes a directory name)",
             where, r.name);
    SY_CHECK(names.insert(r.name).second, "{}: the run name \"{}\" is used twice", where, r.name);
    r.overrides = common;
    const std::vector<std::string> own = set_key(*t, where);
    r.overrides.insert(r.overrides.end(), own.begin(), own.end());
    r.overrides.insert(r.overrides.end(), extra.begin(), extra.end());
    r.overrides.push_back(fmt::format("out_dir=\"{}/{}\"", x.out_dir, r.name));
    x.runs.push_back(std::move(r));
  }
  for (const std::string& o : only)
    SY_CHECK(names.count(o), "{}: --only {}: no such run; the runs are: {}", path, o,
             fmt::join(names, ", "));
  if (!only.empty())
    std::erase_if(x.runs, [&](const ExperimentRun& r) {
      return std::find(only.begin(), only.end(), r.name) == only.end();
    });
  // Resolve and validate every run before any of them trains.
  for (ExperimentRun& r : x.runs) {
    try {
      r.config = load_run_config(x.base, r.overrides);
    } catch (const Error& e) {
      fail(fmt::format("{}: run \"{}\": {}", path, r.name, e.what()));
    }
  }
  return x;
}

}  // namespace sy

#include "train/experiment.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/error.h"
#include "data/batch_source.h"

namespace sy {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxSeeds = 100;

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

// A number written as an integer or a float; none when the key is absent.
std::optional<double> num_key(const toml::table& t, const std::string& key,
                              const std::string& where) {
  const toml::node* n = t.get(key);
  if (!n) return std::nullopt;
  if (const auto* i = n->as_integer()) return static_cast<double>(i->get());
  const auto* f = n->as_floating_point();
  SY_CHECK(f && std::isfinite(f->get()), "{}: `{}` must be a finite number, e.g. {} = 5.4", where,
           key, key);
  return f->get();
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

template <size_t N>
bool one_of(std::string_view s, const std::string_view (&list)[N]) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

// The domains a run's evaluations report: its data's domains and those of its validation
// prefixes (a file name without _train/_valid/_test), as src/data/batch_source.cc names them.
std::set<std::string> eval_domains(const RunConfig& cfg) {
  const std::vector<std::string> names = domain_names(cfg);
  std::set<std::string> out(names.begin(), names.end());
  std::istringstream words(cfg.data.source == "blend" ? cfg.data.valid : std::string());
  for (std::string w; words >> w;) {
    std::string name = w.substr(w.find_last_of('/') + 1);
    for (std::string_view sfx : {"_train", "_valid", "_test"})
      if (name.size() > sfx.size() && name.ends_with(sfx)) name.resize(name.size() - sfx.size());
    out.insert(name);
  }
  return out;
}

// Why `metric` cannot be computed for a run of `cfg` ("" when it can; with cfg null, only the
// name is checked). *missing_domain is set when the only problem is a domain the run's data does
// not have.
std::string metric_problem(const std::string& metric, const RunConfig* cfg, bool* missing_domain) {
  *missing_domain = false;
  if (one_of(metric, kClaimMetrics)) return {};
  const std::string_view layer_prefix = "specialisation.layer";
  if (metric.starts_with(layer_prefix)) {
    const std::string_view digits = std::string_view(metric).substr(layer_prefix.size());
    int64_t l = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), l);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty())
      return fmt::format("`metric` \"{}\" must end in a layer number, e.g. specialisation.layer1",
                         metric);
    if (cfg && (l < cfg->model.n_dense_layers || l >= cfg->model.n_layers))
      return fmt::format(
          "`metric` \"{}\" must name an MoE layer, {}..{} (model.n_dense_layers .. "
          "model.n_layers - 1), got layer {}",
          metric, cfg->model.n_dense_layers, cfg->model.n_layers - 1, l);
    return {};
  }
  if (metric.starts_with("domain.")) {
    const size_t dot = metric.rfind('.');
    const std::string domain = metric.substr(7, dot > 7 ? dot - 7 : 0);
    const std::string what = metric.substr(dot + 1);
    if (domain.empty() || !one_of(what, kDomainMetrics))
      return fmt::format("`metric` \"{}\" must be domain.<domain>.<m> with m one of {}", metric,
                         fmt::join(kDomainMetrics, ", "));
    if (!cfg) return {};
    const std::set<std::string> domains = eval_domains(*cfg);
    if (!domains.contains(domain)) {
      *missing_domain = true;
      return fmt::format("`metric` \"{}\" names the domain \"{}\"; the run's data has {}", metric,
                         domain, fmt::join(domains, ", "));
    }
    return {};
  }
  return fmt::format(
      "`metric` must be one of {}, domain.<domain>.<{}> or specialisation.layer<l>, got \"{}\"",
      fmt::join(kClaimMetrics, ", "), fmt::join(kDomainMetrics, "|"), metric);
}

ExperimentClaim parse_claim(const toml::table& t, const std::string& where) {
  only_keys(t, {"metric", "better", "arm", "reference", "value", "text"}, where);
  ExperimentClaim c;
  c.metric = str_key(t, "metric", where, true);
  c.better = str_key(t, "better", where, true);
  SY_CHECK(c.better == "lower" || c.better == "higher",
           "{}: `better` must be \"lower\" or \"higher\" (the side of the reference the arm's "
           "metric is claimed to be on), got \"{}\"",
           where, c.better);
  c.arm = str_key(t, "arm", where, true);
  c.reference = str_key(t, "reference", where, false);
  c.value = num_key(t, "value", where);
  SY_CHECK(!(c.value && t.get("reference")),
           "{}: `reference` and `value` must not both be given: a claim compares the arm with "
           "another arm (reference) or with a constant (value)",
           where);
  c.text = str_key(t, "text", where, false);
  return c;
}

}  // namespace

std::string ExperimentRun::label() const {
  return seed > 0 ? fmt::format("{}/seed-{}", name, seed) : name;
}

Experiment load_experiment(const std::string& path, const ExperimentOptions& opt) {
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
  only_keys(root,
            {"description", "claim", "base", "out_dir", "set", "seeds", "reference", "target_loss",
             "runs", "claims"},
            path);
  Experiment x;
  x.path = path;
  x.quick = opt.quick;
  x.description = str_key(root, "description", path, false);
  x.claim = str_key(root, "claim", path, false);
  const std::string base_rel = str_key(root, "base", path, true);
  x.base = (fs::path(path).parent_path() / base_rel).lexically_normal().string();
  x.out_dir = str_key(root, "out_dir", path, true);
  SY_CHECK(!x.out_dir.empty(), "{}: `out_dir` must be a directory path, got \"\"", path);
  if (!opt.out_dir.empty())
    x.out_dir = opt.out_dir;
  else if (opt.quick)  // never mixed with the full runs (another model shape)
    x.out_dir = x.out_dir.substr(0, x.out_dir.find_last_not_of('/') + 1) + "-quick";
  const std::vector<std::string> common = set_key(root, path);

  if (const toml::node* n = root.get("seeds")) {
    const auto* i = n->as_integer();
    SY_CHECK(i && i->get() >= 1 && i->get() <= kMaxSeeds,
             "{}: `seeds` must be a whole number in 1..{}, got {}", path, kMaxSeeds,
             i ? std::to_string(i->get()) : "a non-integer");
    x.seeds = static_cast<int>(i->get());
  }
  SY_CHECK(opt.seeds >= 0 && opt.seeds <= kMaxSeeds, "{}: --seeds must be in 1..{}, got {}", path,
           kMaxSeeds, opt.seeds);
  if (opt.seeds > 0) x.seeds = opt.seeds;
  x.target_loss = num_key(root, "target_loss", path);
  SY_CHECK(!x.target_loss || *x.target_loss > 0,
           "{}: `target_loss` must be a validation loss > 0 (nats/token), got {}", path,
           x.target_loss.value_or(0));
  if (x.target_loss && opt.quick) {
    x.notes.push_back(fmt::format(
        "--quick: target_loss = {} ignored (it is for the full runs); the target is derived "
        "from the reference arm",
        *x.target_loss));
    x.target_loss.reset();
  }

  const toml::array* runs = root["runs"].as_array();
  SY_CHECK(runs && !runs->empty(),
           "{}: needs at least one [[runs]] table (name = \"...\", set = [...])", path);
  // The arms in file order, each resolved once without seed overrides.
  std::vector<ExperimentRun> arms;
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
    if (opt.quick)
      r.overrides.insert(r.overrides.end(), std::begin(kQuickOverrides), std::end(kQuickOverrides));
    r.overrides.insert(r.overrides.end(), opt.overrides.begin(), opt.overrides.end());
    arms.push_back(std::move(r));
  }
  for (const std::string& o : opt.only)
    SY_CHECK(names.count(o), "{}: --only {}: no such run; the runs are: {}", path, o,
             fmt::join(names, ", "));

  x.reference = str_key(root, "reference", path, false);
  if (x.reference.empty()) x.reference = arms.front().name;
  SY_CHECK(names.count(x.reference), "{}: `reference` must name one of the runs ({}), got \"{}\"",
           path, fmt::join(names, ", "), x.reference);

  // Resolve and validate every arm that will train before any of them does.
  const auto kept = [&](const std::string& name) {
    return opt.only.empty() || std::find(opt.only.begin(), opt.only.end(), name) != opt.only.end();
  };
  std::erase_if(arms, [&](const ExperimentRun& r) { return !kept(r.name); });
  for (ExperimentRun& r : arms) {
    std::vector<std::string> o = r.overrides;
    o.push_back("out_dir=" + toml_quote(x.out_dir + "/" + r.name));
    try {
      r.config = load_run_config(x.base, o);
    } catch (const Error& e) {
      fail(fmt::format("{}: run \"{}\": {}", path, r.name, e.what()));
    }
  }
  const auto arm_config = [&](const std::string& name) -> const RunConfig& {
    return std::find_if(arms.begin(), arms.end(), [&](const auto& r) { return r.name == name; })
        ->config;
  };

  // Claims: the schema, then the metric against the arms' configs (layers, domains); a claim
  // whose arms --only leaves out is dropped with a note.
  if (const toml::node* n = root.get("claims")) {
    const toml::array* cs = n->as_array();
    SY_CHECK(cs,
             "{}: `claims` must be an array of tables ([[claims]] metric = ..., better = ..., "
             "arm = ...)",
             path);
    for (size_t i = 0; i < cs->size(); ++i) {
      const std::string where = fmt::format("{}: claims[{}]", path, i);
      const toml::table* t = (*cs)[i].as_table();
      SY_CHECK(t, "{}: must be a table (metric = ..., better = ..., arm = ...)", where);
      ExperimentClaim c = parse_claim(*t, where);
      SY_CHECK(names.count(c.arm), "{}: `arm` must name one of the runs ({}), got \"{}\"", where,
               fmt::join(names, ", "), c.arm);
      if (!c.value && c.reference.empty()) c.reference = x.reference;
      if (!c.value) {
        SY_CHECK(names.count(c.reference),
                 "{}: `reference` must name one of the runs ({}), got \"{}\"", where,
                 fmt::join(names, ", "), c.reference);
        SY_CHECK(c.reference != c.arm,
                 "{}: `reference` must differ from `arm` (\"{}\"); to compare an arm with a "
                 "constant, give `value`",
                 where, c.arm);
      }
      bool missing_domain = false;
      const std::string name_problem = metric_problem(c.metric, nullptr, &missing_domain);
      SY_CHECK(name_problem.empty(), "{}: {}", where, name_problem);
      if (!kept(c.arm) || (!c.reference.empty() && !kept(c.reference))) {
        x.notes.push_back(
            fmt::format("--only: claim {} ({} of {} vs {}) left out: its runs are "
                        "not all trained",
                        i, c.metric, c.arm, c.value ? fmt::format("{}", *c.value) : c.reference));
        continue;
      }
      bool dropped = false;
      for (const std::string& run : {c.arm, c.reference}) {
        if (run.empty() || dropped) continue;
        const std::string problem = metric_problem(c.metric, &arm_config(run), &missing_domain);
        if (problem.empty()) continue;
        if (missing_domain && opt.quick) {
          x.notes.push_back(fmt::format("--quick: claim {} ({} of {}) left out: {}", i, c.metric,
                                        c.arm, problem));
          dropped = true;
          continue;
        }
        fail(fmt::format("{}: {} (run \"{}\")", where, problem, run));
      }
      if (!dropped) x.claims.push_back(std::move(c));
    }
  }
  for (const ExperimentRun& r : arms) x.arms.push_back(r.name);
  if (!kept(x.reference)) {
    x.notes.push_back(fmt::format(
        "--only: the reference run \"{}\" is not trained: no paired differences", x.reference));
    x.reference.clear();
  }

  // Seeds: one run per arm as before, or seed k of every arm in <out_dir>/<name>/seed-<k>.
  for (int k = 1; k <= x.seeds; ++k) {
    for (const ExperimentRun& arm : arms) {
      ExperimentRun r = arm;
      if (x.seeds == 1) {
        r.overrides.push_back("out_dir=" + toml_quote(x.out_dir + "/" + r.name));
        x.runs.push_back(std::move(r));
        continue;
      }
      r.seed = k;
      r.overrides.push_back(fmt::format("train.seed={}", arm.config.train.seed + k - 1));
      if (arm.config.data.source == "synthetic")
        r.overrides.push_back(
            fmt::format("data.synthetic_seed={}", arm.config.data.synthetic_seed + k - 1));
      r.overrides.push_back("out_dir=" + toml_quote(x.out_dir + "/" + r.label()));
      try {
        r.config = load_run_config(x.base, r.overrides);
      } catch (const Error& e) {
        fail(fmt::format("{}: run \"{}\": {}", path, r.label(), e.what()));
      }
      x.runs.push_back(std::move(r));
    }
  }
  return x;
}

Experiment load_experiment(const std::string& path, const std::vector<std::string>& extra,
                           const std::vector<std::string>& only, const std::string& out_dir) {
  return load_experiment(path,
                         ExperimentOptions{.overrides = extra, .only = only, .out_dir = out_dir});
}

std::string experiment_manifest_json(const Experiment& x, const std::string& command) {
  toml::table root;
  root.insert("format", 1);
  root.insert("file", x.path);
  root.insert("description", x.description);
  root.insert("claim", x.claim);
  root.insert("base", x.base);
  root.insert("out_dir", x.out_dir);
  root.insert("command", command);
  root.insert("seeds", x.seeds);
  root.insert("quick", x.quick);
  if (!x.reference.empty()) root.insert("reference", x.reference);
  if (x.target_loss) root.insert("target_loss", *x.target_loss);
  toml::array arms;
  for (const std::string& name : x.arms) {
    toml::array runs;
    for (const ExperimentRun& r : x.runs) {
      if (r.name != name) continue;
      toml::table run;
      run.insert("seed", std::max(r.seed, 1));  // the pairing key: seed 1 with one seed
      run.insert("dir", r.label());             // relative to out_dir
      run.insert("train_seed", static_cast<int64_t>(r.config.train.seed));
      if (r.config.data.source == "synthetic")
        run.insert("synthetic_seed", static_cast<int64_t>(r.config.data.synthetic_seed));
      runs.push_back(std::move(run));
    }
    toml::table arm;
    arm.insert("name", name);
    arm.insert("runs", std::move(runs));
    arms.push_back(std::move(arm));
  }
  root.insert("arms", std::move(arms));
  toml::array claims;
  for (const ExperimentClaim& c : x.claims) {
    toml::table t;
    t.insert("metric", c.metric);
    t.insert("better", c.better);
    t.insert("arm", c.arm);
    if (c.value)
      t.insert("value", *c.value);
    else
      t.insert("reference", c.reference);
    if (!c.text.empty()) t.insert("text", c.text);
    claims.push_back(std::move(t));
  }
  root.insert("claims", std::move(claims));
  toml::array notes;
  for (const std::string& n : x.notes) notes.push_back(n);
  root.insert("notes", std::move(notes));
  std::ostringstream out;
  out << toml::json_formatter{root} << "\n";
  return out.str();
}

}  // namespace sy

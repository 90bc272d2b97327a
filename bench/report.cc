#include "bench/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsinf::bench {

namespace {

bool looks_numeric(const std::string& cell) {
  return cell.empty() || cell == "n/a" || std::isdigit(static_cast<unsigned char>(cell[0]));
}

}  // namespace

std::string TextTable::render() const {
  std::vector<size_t> widths(header_.size(), 0);
  auto widen = [&widths](const std::vector<std::string>& cells) {
    if (widths.size() < cells.size()) widths.resize(cells.size(), 0);
    for (size_t i = 0; i < cells.size(); ++i) widths[i] = std::max(widths[i], cells[i].size());
  };
  widen(header_);
  for (const auto& row : rows_) widen(row);
  // Numbers line up on the right, words on the left.
  std::vector<bool> right(widths.size(), true);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) right[i] = right[i] && looks_numeric(row[i]);
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      const std::string pad(widths[i] - cell.size(), ' ');
      if (i > 0) out += "  ";
      out += right[i] ? pad + cell : cell + pad;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(header_);
  size_t total = 0;
  for (size_t w : widths) total += w;
  out += std::string(total + 2 * (widths.empty() ? 0 : widths.size() - 1), '-') + "\n";
  for (const auto& row : rows_) out += line(row);
  return out;
}

std::ostream& Reporter::text() const { return json_ ? std::cerr : std::cout; }

void Reporter::progress(const std::string& line) const { std::cerr << line << std::endl; }

void Reporter::result(const nlohmann::ordered_json& result) const {
  if (json_) std::cout << result.dump() << std::endl;
}

double round_significant(double value, int digits) {
  if (value == 0.0 || !std::isfinite(value)) return value;
  const double scale = std::pow(10.0, digits - 1 - std::floor(std::log10(std::fabs(value))));
  return std::round(value * scale) / scale;
}

std::string format_fixed(double value, int decimals) {
  return absl::StrFormat("%.*f", decimals, value);
}

}  // namespace dsinf::bench

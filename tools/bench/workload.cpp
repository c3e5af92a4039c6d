#include "bench/workload.h"

#include "xatm/tcc.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <stdexcept>

namespace xatm::bench {
namespace {

constexpr std::int64_t initial_balance = 1'000'000;  // per account, and the stock per item
constexpr int insert_chunk = 1000;                   // rows per INSERT when filling MariaDB

bool is_postgresql(const connection& rm) { return rm.dialect() == "postgresql"; }

void exec_all(connection& rm, std::initializer_list<std::string> statements) {
  for (const std::string& sql : statements) rm.exec(sql).value();
}

std::int64_t to_int(const std::optional<std::string>& text) {
  if (!text || text->empty()) return 0;
  return std::stoll(*text);
}

std::int64_t query_int(connection& rm, const std::string& sql) {
  auto rows = rm.exec(sql).value();
  if (rows.rows.empty() || rows.rows.front().empty()) return 0;
  return to_int(rows.rows.front().front());
}

struct mode_totals {
  std::int64_t count = 0;
  std::int64_t amount = 0;
};

// Rows "mode, count, sum" -> per mode.
std::map<std::string, mode_totals> totals_by_mode(connection& rm, const std::string& table,
                                                  const std::string& amount_column) {
  auto rows = rm.exec("SELECT mode, count(*), sum(" + amount_column + ") FROM " + table + " GROUP BY mode").value();
  std::map<std::string, mode_totals> totals;
  for (const auto& row : rows.rows) {
    if (row.size() != 3 || !row[0]) throw std::runtime_error("unexpected answer counting " + table);
    totals[*row[0]] = {to_int(row[1]), to_int(row[2])};
  }
  return totals;
}

// Creates accounts (id, balance) or items (id, stock) with `rows` rows of initial_balance.
void create_numbered_table(connection& rm, const std::string& table, const std::string& value_column, int rows) {
  const std::string initial = std::to_string(initial_balance);
  if (is_postgresql(rm)) {
    rm.exec("CREATE TABLE " + table + " (id integer PRIMARY KEY, " + value_column + " bigint NOT NULL);" +
            "INSERT INTO " + table + " SELECT g, " + initial + " FROM generate_series(1, " + std::to_string(rows) +
            ") g; ANALYZE " + table)
        .value();
    return;
  }
  rm.exec("CREATE TABLE " + table + " (id INT PRIMARY KEY, " + value_column + " BIGINT NOT NULL) ENGINE=InnoDB")
      .value();
  for (int first = 1; first <= rows; first += insert_chunk) {
    std::string sql = "INSERT INTO " + table + " VALUES ";
    for (int id = first; id < first + insert_chunk && id <= rows; ++id) {
      if (id != first) sql += ',';
      sql += '(' + std::to_string(id) + ',' + initial + ')';
    }
    rm.exec(sql).value();
  }
}

void create_transfer_tables(connection& rm, int accounts) {
  if (is_postgresql(rm)) {
    rm.exec(
          "DROP TABLE IF EXISTS xatm_bench_ledger, xatm_bench_accounts;"
          "CREATE TABLE xatm_bench_ledger (token text PRIMARY KEY, mode text NOT NULL, account integer NOT NULL,"
          " amount bigint NOT NULL)")
        .value();
  } else {
    exec_all(rm, {"DROP TABLE IF EXISTS xatm_bench_ledger", "DROP TABLE IF EXISTS xatm_bench_accounts",
                  "CREATE TABLE xatm_bench_ledger (token VARCHAR(64) PRIMARY KEY, mode VARCHAR(16) NOT NULL,"
                  " account INT NOT NULL, amount BIGINT NOT NULL) ENGINE=InnoDB"});
  }
  create_numbered_table(rm, "xatm_bench_accounts", "balance", accounts);
}

// Debit (sign -1) or credit (+1) one account and write the ledger row. PostgreSQL takes both
// statements in one round trip; MariaDB's exec() runs one statement at a time.
void transfer_side(connection& rm, const transaction_input& in, int account, int sign) {
  const std::string update = "UPDATE xatm_bench_accounts SET balance = balance " + std::string(sign < 0 ? "-" : "+") +
                             " " + std::to_string(in.amount) + " WHERE id = " + std::to_string(account);
  const std::string insert = "INSERT INTO xatm_bench_ledger VALUES ('" + in.token + "', '" + in.mode_label + "', " +
                             std::to_string(account) + ", " + std::to_string(in.amount) + ")";
  if (is_postgresql(rm)) {
    rm.exec(update + "; " + insert).value();
  } else {
    rm.exec(update).value();
    rm.exec(insert).value();
  }
}

}  // namespace

acknowledged& acknowledged::operator+=(const acknowledged& other) {
  count += other.count;
  amount += other.amount;
  uncertain += other.uncertain;
  uncertain_amount += other.uncertain_amount;
  half_committed += other.half_committed;
  half_amount += other.half_amount;
  return *this;
}

const char* local_begin_statement(const connection& rm) noexcept {
  return is_postgresql(rm) ? "BEGIN" : "START TRANSACTION";
}

workload::workload(workload_kind kind, int accounts) : kind_(kind), accounts_(accounts) {}

const char* workload::rm_a() const noexcept { return kind_ == workload_kind::read_write ? "maria" : "pg"; }

const char* workload::rm_b() const noexcept {
  switch (kind_) {
    case workload_kind::transfer: return "maria";
    case workload_kind::read_write: return "pg";
    case workload_kind::pg_pg: return "pg2";
  }
  return "";
}

std::string workload::description() const {
  const std::string n = std::to_string(accounts_);
  switch (kind_) {
    case workload_kind::transfer:
      return "transfer: debit in PostgreSQL, credit in MariaDB, a ledger row in each (" + n + " accounts each)";
    case workload_kind::read_write:
      return "read-write: read stock in MariaDB, write an order in PostgreSQL (" + n + " items)";
    case workload_kind::pg_pg:
      return "pg-pg: the transfer between two PostgreSQL databases of one server (" + n + " accounts each)";
  }
  return {};
}

void workload::create_schema(connection& a, connection& b) const {
  // The tcc mode's participant keeps its barrier on side b; earlier runs' rows go.
  b.exec(barrier_schema(b.dialect())).value();
  b.exec("DELETE FROM xatm_tcc_barrier WHERE gtrid LIKE 'bench-tcc.%'").value();
  if (kind_ != workload_kind::read_write) {
    create_transfer_tables(a, accounts_);
    create_transfer_tables(b, accounts_);
    return;
  }
  // a: MariaDB items; b: PostgreSQL orders.
  a.exec("DROP TABLE IF EXISTS xatm_bench_items").value();
  create_numbered_table(a, "xatm_bench_items", "stock", accounts_);
  b.exec(
       "DROP TABLE IF EXISTS xatm_bench_orders;"
       "CREATE TABLE xatm_bench_orders (token text PRIMARY KEY, mode text NOT NULL, item integer NOT NULL,"
       " quantity bigint NOT NULL, stock_seen bigint NOT NULL)")
      .value();
}

transaction_input workload::draw(std::mt19937_64& random, std::string token, const char* mode_label) const {
  std::uniform_int_distribution<int> account(1, accounts_);
  std::uniform_int_distribution<std::int64_t> amount(1, 100);
  transaction_input in;
  in.token = std::move(token);
  in.mode_label = mode_label;
  in.account_a = account(random);
  in.account_b = account(random);
  in.amount = amount(random);
  return in;
}

void workload::run_a(connection& rm, transaction_input& in) const {
  if (kind_ != workload_kind::read_write) {
    transfer_side(rm, in, in.account_a, -1);
    return;
  }
  auto stock = rm.exec("SELECT stock FROM xatm_bench_items WHERE id = " + std::to_string(in.account_a)).value();
  if (stock.rows.size() != 1) throw std::runtime_error("item " + std::to_string(in.account_a) + " is missing");
  in.seen = to_int(stock.rows.front().front());
}

void workload::run_b(connection& rm, transaction_input& in) const {
  if (kind_ != workload_kind::read_write) {
    transfer_side(rm, in, in.account_b, +1);
    return;
  }
  rm.exec("INSERT INTO xatm_bench_orders VALUES ('" + in.token + "', '" + in.mode_label + "', " +
          std::to_string(in.account_a) + ", " + std::to_string(in.amount) + ", " + std::to_string(in.seen) + ")")
      .value();
}

verification workload::verify(connection& a, connection& b, const std::map<mode, acknowledged>& acks,
                              int clients) const {
  verification result{kind_, clients, true, {}};
  std::ostringstream problems;
  std::ostringstream summary;
  auto problem = [&](const std::string& text) {
    result.ok = false;
    problems << (problems.tellp() > 0 ? "; " : "") << text;
  };
  // Present: between the acknowledged commits and those plus the in-doubt ones.
  auto check_count = [&](const std::string& where, const std::string& mode_label, std::int64_t found,
                         std::int64_t found_amount, const acknowledged& ack, bool with_half) {
    const auto low = static_cast<std::int64_t>(ack.count + (with_half ? ack.half_committed : 0));
    const auto high = low + static_cast<std::int64_t>(ack.uncertain);
    const std::int64_t low_amount = ack.amount + (with_half ? ack.half_amount : 0);
    if (found < low || found > high || (ack.uncertain == 0 && found_amount != low_amount)) {
      problem(where + ": " + std::to_string(found) + " " + mode_label + " rows (amount " +
              std::to_string(found_amount) + ") but " + std::to_string(low) + " acknowledged (amount " +
              std::to_string(low_amount) + ")" +
              (ack.uncertain > 0 ? " and " + std::to_string(ack.uncertain) + " in doubt" : ""));
    }
  };

  if (kind_ == workload_kind::read_write) {
    const std::int64_t stock = query_int(a, "SELECT sum(stock) FROM xatm_bench_items");
    const std::int64_t expected_stock = initial_balance * accounts_;
    if (stock != expected_stock) {
      problem("MariaDB stock changed: " + std::to_string(stock) + " != " + std::to_string(expected_stock));
    }
    const std::int64_t wrong_reads =
        query_int(b, "SELECT count(*) FROM xatm_bench_orders WHERE stock_seen <> " + std::to_string(initial_balance));
    if (wrong_reads != 0) problem(std::to_string(wrong_reads) + " orders saw a wrong stock");
    auto orders = totals_by_mode(b, "xatm_bench_orders", "quantity");
    std::int64_t total = 0;
    for (const auto& [m, ack] : acks) {
      const auto found = orders[mode_name(m)];
      check_count("PostgreSQL orders", mode_name(m), found.count, found.amount, ack, false);
      total += found.count;
    }
    summary << "stock unchanged; " << total << " orders = the acknowledged commits, per mode";
  } else {
    const std::int64_t balance_a = query_int(a, "SELECT sum(balance) FROM xatm_bench_accounts");
    const std::int64_t balance_b = query_int(b, "SELECT sum(balance) FROM xatm_bench_accounts");
    std::int64_t half_amount = 0;
    for (const auto& [m, ack] : acks) half_amount += ack.half_amount;
    const std::int64_t expected = 2 * initial_balance * accounts_ - half_amount;
    if (balance_a + balance_b != expected) {
      problem("balances not conserved: " + std::to_string(balance_a) + " + " + std::to_string(balance_b) +
              " != " + std::to_string(expected));
    }
    auto ledger_a = totals_by_mode(a, "xatm_bench_ledger", "amount");
    auto ledger_b = totals_by_mode(b, "xatm_bench_ledger", "amount");
    std::set<std::string> modes_found;
    for (const auto& [label, totals] : ledger_a) modes_found.insert(label);
    for (const auto& [label, totals] : ledger_b) modes_found.insert(label);
    std::int64_t rows = 0;
    for (const auto& [m, ack] : acks) {
      const std::string label = mode_name(m);
      modes_found.erase(label);
      const auto on_a = ledger_a[label];
      const auto on_b = ledger_b[label];
      check_count("ledger of " + std::string(rm_a()), label, on_a.count, on_a.amount, ack, true);
      check_count("ledger of " + std::string(rm_b()), label, on_b.count, on_b.amount, ack, false);
      if (ack.half_committed == 0 && (on_a.count != on_b.count || on_a.amount != on_b.amount)) {
        problem(label + " ledgers differ: " + std::to_string(on_a.count) + " rows (" + std::to_string(on_a.amount) +
                ") vs " + std::to_string(on_b.count) + " rows (" + std::to_string(on_b.amount) + ")");
      }
      rows += on_b.count;
    }
    for (const std::string& label : modes_found) problem("ledger rows of an unknown mode '" + label + "'");
    summary << "balances conserved (" << balance_a + balance_b << "); ledgers identical on both sides, " << rows
            << " rows = the acknowledged commits, per mode";
    if (half_amount != 0) summary << " (local half-commits accounted for)";
  }
  result.detail = result.ok ? summary.str() : problems.str();
  return result;
}

}  // namespace xatm::bench

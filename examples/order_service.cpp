// The order service of docs/tcc.md: one business step that takes an item out of stock in
// MariaDB, records the order in PostgreSQL, and reserves the price in a wallet service that
// cannot do XA (examples/wallet_service.cpp, over HTTP). The two databases are XA branches, the
// wallet a TCC branch; one commit decision covers all three. Run by `tools/xatm.sh demo`.
//
//   XATM_DEMO_PG='host=... dbname=...' XATM_DEMO_MYSQL='unix_socket=... user=...'
//   XATM_DEMO_WALLET=http://127.0.0.1:PORT  xatm-example-orders COMMAND LOG_DIR [ARGS]
//
//   setup LOG_DIR                     fresh tables: 10 widgets in stock, 100 in carol's wallet
//   order LOG_DIR ID QUANTITY PRICE   one order for carol; prints what commit() said
//   show  LOG_DIR                     stock, orders, carol's wallet and the wallet's barrier rows
//
// The wallet's own tables live on the same PostgreSQL server here (a demo); in production it is
// another team's service with its own database.
#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "console_log.h"
#include "xatm/error.h"
#include "xatm/tcc.h"
#include "xatm/transaction_manager.h"

namespace {

constexpr const char* customer = "carol";

std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    std::cerr << "xatm-example-orders: set " << name << "\n";
    std::exit(2);
  }
  return value;
}

// GET or POST on the wallet's own account endpoints (not part of TCC: setup and display).
std::string wallet_call(const std::string& method, const std::string& path, const std::string& body = {}) {
  httplib::Client wallet(required_env("XATM_DEMO_WALLET"));
  wallet.set_connection_timeout(std::chrono::seconds(5));
  auto reply = method == "GET" ? wallet.Get(path) : wallet.Post(path, body, "text/plain");
  if (!reply) return "(the wallet does not answer: " + httplib::to_string(reply.error()) + ")";
  return reply->body;
}

void setup(xatm::transaction_manager& tm) {
  auto maria = tm.connect("stock_mariadb");
  for (const char* sql :
       {"DROP TABLE IF EXISTS stock",
        "CREATE TABLE stock (item varchar(32) PRIMARY KEY, quantity int NOT NULL CHECK (quantity >= 0)) ENGINE=InnoDB",
        "INSERT INTO stock VALUES ('widget', 10)"}) {
    maria->exec(sql).value();
  }
  auto pg = tm.connect("orders_pg");
  pg->exec("DROP TABLE IF EXISTS orders; CREATE TABLE orders (id text PRIMARY KEY, item text NOT NULL, "
           "quantity int NOT NULL, price bigint NOT NULL, customer text NOT NULL)")
      .value();
  wallet_call("POST", "/accounts", std::string("account=") + customer + ";balance=100");
}

// The business step. The SQL runs first; the wallet's try comes last, so that a refusal there
// costs the least; commit() then decides all three branches together.
void order(xatm::transaction_manager& tm, const std::string& id, int quantity, long price) {
  auto maria = tm.connect("stock_mariadb");
  auto pg = tm.connect("orders_pg");
  std::cout << "\n== order " << id << ": " << quantity << " widget(s) for " << price << ", paid from " << customer
            << "'s wallet\n";
  try {
    auto tx = tm.begin();
    tx.enlist(*maria);
    tx.enlist(*pg);
    // Out of stock violates the CHECK constraint: exec() throws and `tx` rolls back everything.
    maria->exec("UPDATE stock SET quantity = quantity - " + std::to_string(quantity) + " WHERE item = 'widget'").value();
    pg->exec("INSERT INTO orders VALUES ('" + id + "', 'widget', " + std::to_string(quantity) + ", " +
             std::to_string(price) + ", '" + customer + "')")
        .value();
    // Recorded in the decision log, then the wallet's try reserves the price. A refusal (not
    // enough money), an error or a timeout rolls the XA branches back and cancels the branch.
    tx.enlist_tcc("wallet", std::string("account=") + customer + ";amount=" + std::to_string(price));
    auto outcome = tx.commit();
    std::cout << "   " << tx.gtrid() << ": "
              << (outcome == xatm::commit_outcome::committed
                      ? "committed: stock taken, order recorded, payment confirmed"
                      : "committed; completion pending (recovery finishes it)")
              << "\n";
  } catch (const xatm::in_doubt_error& e) {
    std::cout << "   IN DOUBT (check the data): " << e.what() << "\n";
  } catch (const xatm::heuristic_error& e) {
    std::cout << "   HEURISTIC OUTCOME (an operator must look): " << e.what() << "\n";
  } catch (const xatm::error& e) {
    std::cout << "   rolled back everywhere: " << e.what() << "\n";
  }
}

void show(xatm::transaction_manager& tm) {
  auto maria = tm.connect("stock_mariadb");
  auto pg = tm.connect("orders_pg");
  auto stock = maria->exec("SELECT quantity FROM stock WHERE item = 'widget'").value();
  auto orders = pg->exec("SELECT coalesce(string_agg(id || ':' || quantity || 'x' || price, ' ' ORDER BY id), "
                         "'(none)') FROM orders")
                    .value();
  std::cout << "\nMariaDB stock:     widget = " << stock.rows.at(0).at(0).value_or("?") << "\n"
            << "PostgreSQL orders: " << orders.rows.at(0).at(0).value_or("?") << "\n"
            << "wallet:            " << customer << " " << wallet_call("GET", std::string("/accounts/") + customer)
            << "\n";
  auto barrier = pg->exec("SELECT coalesce(string_agg(right(gtrid, 12) || '/' || step || "
                          "CASE WHEN step = 'try' AND origin = 'cancel' THEN '(written by the cancel)' ELSE '' END, "
                          "' ' ORDER BY created, step), '(none)') FROM xatm_tcc_barrier");
  if (barrier) std::cout << "wallet barrier:    " << barrier.value().rows.at(0).at(0).value_or("?") << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 2 ? argv[1] : "";
  if ((command != "setup" && command != "order" && command != "show") || (command == "order" && argc != 6)) {
    std::cerr << "usage: xatm-example-orders setup|show LOG_DIR\n"
                 "       xatm-example-orders order LOG_DIR ID QUANTITY PRICE\n";
    return 2;
  }
  const char* level = std::getenv("XATM_DEMO_LOG_LEVEL");
  xatm::tools::install_console_log(level != nullptr ? level : command == "order" ? "info" : "warning",
                                   /*show_protocol=*/command == "order");
  std::cout << std::unitbuf;
  std::filesystem::path log_dir = argv[2];
  std::filesystem::create_directories(log_dir);
  std::filesystem::permissions(log_dir, std::filesystem::perms::owner_all);
  try {
    xatm::tm_options options{.tm_id = "orders", .log_path = (log_dir / "decisions.db").string()};
    options.prepare_timeout = std::chrono::seconds(2);  // also bounds the wallet's try
    options.recovery_interval = std::chrono::milliseconds(0);
    xatm::transaction_manager tm(options);
    tm.register_rm("stock_mariadb", "mariadb", required_env("XATM_DEMO_MYSQL"));
    tm.register_rm("orders_pg", "postgresql", required_env("XATM_DEMO_PG"));
    tm.register_tcc("wallet", xatm::make_http_participant(required_env("XATM_DEMO_WALLET")));
    if (command == "setup") {
      setup(tm);
    } else if (command == "order") {
      order(tm, argv[3], std::stoi(argv[4]), std::stol(argv[5]));
    }
    show(tm);
  } catch (const std::exception& e) {
    std::cerr << "xatm-example-orders: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

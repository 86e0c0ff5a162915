//! cairn's integration tests: real nodes on 127.0.0.1, one binary, a module per topic.

mod api_client;
mod attack;
mod bad_input;
mod churn;
mod gateway;
mod health;
mod http_server;
mod liar;
mod names;
mod put_get;
mod recovery;
mod rejoin;
mod repair;
mod restart;

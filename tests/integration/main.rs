//! Integration tests: the real operator and simulator binaries against a real kube-apiserver.
//! Run them with `hack/test.sh`, which starts etcd + kube-apiserver and sets KUBECONFIG.

mod harness;

mod auth;
mod cbr;
mod chart;
mod cli;
mod cloud_client;
mod faults;
mod lifecycle;
mod operations;
mod reference;
mod resilience;

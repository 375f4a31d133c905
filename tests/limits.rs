//! A game's limits seen over HTTP from real `minotaur` processes: `input_id` is 1 to 64
//! bytes, `leave` forfeits (and ends a two-player game), a retried input is answered with
//! the state it made, unchanged.

mod support;

use harness::cluster::{Cluster, ClusterOptions};
use serde_json::{Value, json};
use support::MINOTAUR;

/// `POST url` with a JSON body: the status and the JSON answer.
async fn post(cluster: &Cluster, url: &str, body: &Value) -> (u16, Value) {
    let r = cluster
        .http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST answered");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(cluster: &Cluster, url: &str) -> (u16, Value) {
    let r = cluster.http().get(url).send().await.expect("GET answered");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates a game through `url`; its code.
async fn create(cluster: &Cluster, url: &str) -> String {
    let (status, g) = post(cluster, &format!("{url}/api/games"), &json!({})).await;
    assert_eq!(status, 201, "{g}");
    g["code"].as_str().expect("a code").to_string()
}

fn input(player: &str, id: &str, action: Value) -> Value {
    json!({ "player": player, "input_id": id, "action": action })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_id_is_1_to_64_bytes_else_400_naming_it() {
    let cluster = Cluster::start(ClusterOptions::new(MINOTAUR, 91, 1, "limits_input_id"))
        .await
        .expect("a cluster");
    let url = cluster.urls()[0].clone();
    let code = create(&cluster, &url).await;
    let to = format!("{url}/api/games/{code}/input");
    let join = json!({ "type": "join" });

    // 33 characters, 65 bytes: fewer than 64 characters, but over 64 bytes.
    let long = format!("{}x", "é".repeat(32));
    assert_eq!((long.chars().count(), long.len()), (33, 65));
    let (status, v) = post(&cluster, &to, &input("ann", &long, join.clone())).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        "`input_id` is 65 bytes long in UTF-8; it must be 1 to 64 bytes"
    );
    let (status, v) = post(&cluster, &to, &input("ann", "", join.clone())).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "`input_id` must not be empty");
    // Nothing was applied.
    let (_, g) = get(&cluster, &format!("{url}/api/games/{code}")).await;
    assert_eq!(
        (g["seq"].clone(), g["players"].clone()),
        (json!(0), json!([]))
    );

    // 64 bytes (32 two-byte characters) is accepted.
    let (status, v) = post(&cluster, &to, &input("ann", &"é".repeat(32), join)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["seq"], 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_ends_a_two_player_game_and_a_retry_answers_the_same_state() {
    let cluster = Cluster::start(ClusterOptions::new(MINOTAUR, 92, 2, "limits_leave"))
        .await
        .expect("a cluster");
    let urls = cluster.urls();
    let code = create(&cluster, &urls[0]).await;
    // Inputs go through both nodes: one of them routes to the other, so `leave` also
    // crosses the cluster in its compact (postcard) shape.
    let to = |i: usize| format!("{}/api/games/{code}/input", urls[i % 2]);
    for (i, p) in ["ann", "bob"].into_iter().enumerate() {
        let (status, v) = post(
            &cluster,
            &to(i),
            &input(p, &format!("{p}-join"), json!({"type": "join"})),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let end = input("ann", "ann-end-1", json!({ "type": "end_turn" }));
    let (status, ended) = post(&cluster, &to(0), &end).await;
    assert_eq!((status, ended["seq"].clone()), (200, json!(3)), "{ended}");

    // A retry of an input within the window, through the other node: the same state, seq
    // unchanged, ann's turn not ended twice.
    let (status, again) = post(&cluster, &to(1), &end).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["seq"], 3);
    assert_eq!(again["players"], ended["players"]);
    assert_eq!(again["round"], ended["round"]);

    // ann leaves: bob is the only player left and wins.
    for i in 0..2 {
        let leave = input("ann", "ann-leave", json!({ "type": "leave" }));
        let (status, v) = post(&cluster, &to(i), &leave).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (v["status"].clone(), v["winner"].clone(), v["seq"].clone()),
            (json!("over"), json!("bob"), json!(4)),
            "{v}"
        );
        assert_eq!(v["players"][0]["alive"], false);
        assert_eq!(v["players"][0]["health"], 0);
    }
    for url in &urls {
        let (status, g) = get(&cluster, &format!("{url}/api/games/{code}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            (g["status"].clone(), g["winner"].clone()),
            (json!("over"), json!("bob"))
        );
    }
    // The game is over: a new input is refused.
    let late = input("bob", "bob-late", json!({ "type": "end_turn" }));
    let (status, v) = post(&cluster, &to(0), &late).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"], "the game is over; it accepts no more inputs");
    cluster.shutdown().await;
}

//! Scripted model turns for driving real agents: a tool call first, then a
//! final answer once the tool's result comes back. The streams follow the
//! providers' documented event sequences, as the golden fixtures do.

use serde_json::{Value, json};

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// An Anthropic Messages stream producing `blocks` (text or tool_use).
pub fn anthropic_stream(id: &str, model: &str, blocks: &[Value], stop_reason: &str) -> String {
    let mut s = event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 1200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800, "output_tokens": 1}
        }}),
    );
    s += &event("ping", &json!({"type": "ping"}));
    for (index, block) in blocks.iter().enumerate() {
        match block["type"].as_str().unwrap() {
            "text" => {
                s += &event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                );
                let text = block["text"].as_str().unwrap();
                let mid = text
                    .char_indices()
                    .nth(text.chars().count() / 2)
                    .map_or(0, |(i, _)| i);
                for piece in [&text[..mid], &text[mid..]] {
                    s += &event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
                    );
                }
            }
            "tool_use" => {
                s += &event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}),
                );
                let input = block["input"].to_string();
                let mid = input.len() / 2;
                for piece in ["", &input[..mid], &input[mid..]] {
                    s += &event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    );
                }
            }
            other => panic!("no stream shape for {other}"),
        }
        s += &event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
    }
    s += &event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"input_tokens": 1200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800, "output_tokens": 42}}),
    );
    s += &event("message_stop", &json!({"type": "message_stop"}));
    s
}

/// Whether an Anthropic request's last user turn carries a tool result.
pub fn anthropic_has_tool_result(request: &Value) -> Option<String> {
    let last = request["messages"].as_array()?.last()?;
    last["content"].as_array()?.iter().find_map(|b| {
        (b["type"] == "tool_result").then(|| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    })
}

/// An OpenAI Responses stream producing one output item (a message or a function call).
pub fn responses_stream(id: &str, model: &str, item: &Value) -> String {
    let mut seq = 0;
    let mut ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        event(name, &data)
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": 1774092570, "status": status, "model": model,
               "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "usage": usage})
    };
    let mut s = ev(
        "response.created",
        json!({"response": response("in_progress", json!([]), Value::Null)}),
    );
    s += &ev(
        "response.in_progress",
        json!({"response": response("in_progress", json!([]), Value::Null)}),
    );
    let item_id = item["id"].as_str().unwrap();
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    match item["type"].as_str().unwrap() {
        "message" => {
            added["content"] = json!([]);
            s += &ev(
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            );
            s += &ev(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "annotations": [], "text": ""}}),
            );
            let text = item["content"][0]["text"].as_str().unwrap();
            for word in text.split_inclusive(' ') {
                s += &ev(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": word}),
                );
            }
            s += &ev(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
            );
            s += &ev(
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": item["content"][0]}),
            );
        }
        "function_call" => {
            added["arguments"] = json!("");
            s += &ev(
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            );
            let args = item["arguments"].as_str().unwrap();
            let mid = args.len() / 2;
            for piece in [&args[..mid], &args[mid..]] {
                s += &ev(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                );
            }
            s += &ev(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": 0, "arguments": args}),
            );
        }
        other => panic!("no stream shape for {other}"),
    }
    let mut done = item.clone();
    done["status"] = json!("completed");
    s += &ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": done}),
    );
    let usage = json!({"input_tokens": 2100, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 37,
                       "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2137});
    s += &ev(
        "response.completed",
        json!({"response": response("completed", json!([done]), usage)}),
    );
    s
}

/// The output of the last `function_call_output` in a Responses request, if any.
pub fn responses_tool_output(request: &Value) -> Option<String> {
    let last = request["input"].as_array()?.last()?;
    (last["type"] == "function_call_output").then(|| match &last["output"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

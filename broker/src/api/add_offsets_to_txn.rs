//! AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the producer's transaction
//! (its TxnOffsetCommit then goes to the group's coordinator, and the transaction's markers to
//! that partition). v0-1 get INVALID_PRODUCER_EPOCH instead of PRODUCER_FENCED, as Kafka answers.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::RequestContext;
use super::end_txn::txn_error_code;
use crate::Broker;
use crate::txn::core::ProducerIdEpoch;

/// Answers an AddOffsetsToTxn request.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.0.to_string();
    let producer = ProducerIdEpoch {
        producer_id: request.producer_id.0,
        epoch: request.producer_epoch,
    };
    let result = if id.is_empty() {
        Err(ResponseError::InvalidRequest)
    } else {
        let group = request.group_id.0.to_string();
        broker.txns().add_offsets(id, producer, group).await
    };
    let code = txn_error_code(result, ctx.version >= 2);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

//! A discussion: the comments on an issue or a patch, in replay order.

use ed25519_dalek::VerifyingKey;

use crate::change::ChangeId;

/// One comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The change that made it.
    pub id: ChangeId,
    /// Who wrote it.
    pub author: VerifyingKey,
    /// When, by the author's clock.
    pub timestamp: u64,
    /// Its text, as last edited by its author.
    pub body: String,
    /// Whether its author edited it.
    pub edited: bool,
    /// The comment it answers.
    pub reply_to: Option<ChangeId>,
}

/// Comments in replay order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thread {
    /// The comments.
    pub comments: Vec<Comment>,
}

impl Thread {
    /// The comment `id`.
    pub fn get(&self, id: &ChangeId) -> Option<&Comment> {
        self.comments.iter().find(|c| c.id == *id)
    }

    /// Adds a comment; one answering a comment not in the thread is refused.
    pub fn add(&mut self, comment: Comment) -> Result<(), &'static str> {
        if let Some(r) = &comment.reply_to
            && self.get(r).is_none()
        {
            return Err("a reply to a comment not in this thread");
        }
        self.comments.push(comment);
        Ok(())
    }

    /// Replaces comment `id`'s text; only its author may.
    pub fn edit(
        &mut self,
        id: &ChangeId,
        by: &VerifyingKey,
        body: &str,
    ) -> Result<(), &'static str> {
        let comment = self
            .comments
            .iter_mut()
            .find(|c| c.id == *id)
            .ok_or("an edit of a comment not in this thread")?;
        if comment.author != *by {
            return Err("an edit of a comment by someone not its author");
        }
        comment.body = body.to_owned();
        comment.edited = true;
        Ok(())
    }
}
